"""The flash as a dict and a board around it, for guest programs run under
MicroPython (tests and bench/heap.py): the firmware's file operations
(files.Files) without a file system in the guest, and the board interface. Read as text and run inside the guest, never imported
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


class GuestBoard:
    """board/lib/board.py's interface for the firmware in the guest: a clock
    `us` the program moves, always online, scratch registers in a list, the
    flash as RamFiles above. Guest programs subclass it for what they test."""
    def __init__(self):
        self.us = 0
        self.fs = RamFiles()
        self.scratch = [0, 0, 0, 0]
        self.cause = 0
        self.handlers = []
    def ticks_us(self):
        return self.us & 0x3FFFFFFF
    def ticks_ms(self):
        return (self.us // 1000) & 0x3FFFFFFF
    def sleep_ms(self, ms):
        pass
    def log(self, text):
        pass
    def unique_id(self):
        return "e6614103e7a1"
    def data_path(self, name):
        return "d/" + name
    def pulse_input(self, pin, pull, edge, both, handler):
        self.handlers.append(handler)
    def wifi_start(self, ssid, password):
        pass
    def wifi_status(self):
        return 3
    def wifi_stop(self):
        pass
    def resolve(self, host):
        return host
    def ntp_unix_ms(self, host):
        return 1800000000000 + self.us // 1000
    def led(self, on):
        pass
    def watchdog(self, ms):
        return self
    def feed(self):
        pass
    def scratch_read(self, i):
        return self.scratch[i]
    def scratch_write(self, i, v):
        self.scratch[i] = v
    def reset_cause(self):
        return self.cause
    def heap_free(self):
        return 150000
    def wifi_rssi(self):
        return -60
    def files(self):
        return self.fs
    def mqtt_retained(self, client, topic):
        return None
