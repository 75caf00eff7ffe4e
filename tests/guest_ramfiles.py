"""The flash as a dict, for guest programs run under MicroPython (tests and
bench/heap.py): the firmware's file operations (files.Files) without a file
system in the guest. Read as text and run inside the guest, never imported
on the host. It imports nothing, so bench/heap.py counts no module of the
firmware before the firmware's own imports."""

class RamFiles:
    def __init__(self):
        self.d = {}
    def read(self, path):
        if path not in self.d:
            raise OSError(2)
        return bytes(self.d[path])
    def readinto(self, path, buf):
        data = self.read(path)[:len(buf)]
        buf[:len(data)] = data
        return len(data)
    def write(self, path, data):
        self.d[path] = bytearray(data)
    def append(self, path, data):
        if path not in self.d:
            self.d[path] = bytearray()
        self.d[path].extend(data)
    def remove(self, path):
        del self.d[path]
    def listdir(self, path):
        return [p[len(path) + 1:] for p in self.d if p.startswith(path + "/")]
    def mkdir(self, path):
        pass
    def size(self, path):
        return len(self.read(path))
    def free_blocks(self, path):
        return 150
    def replace(self, path, data):
        self.write(path, data)
    def close(self):
        pass
