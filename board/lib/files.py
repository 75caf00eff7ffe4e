"""The few flash-file operations the firmware uses, in one place.

Energy totals and spilled readings go through these methods only, so the
host's virtual board can cut the power in the middle of any of them (the
flash operation a real cut interrupts), and the firmware has one place that
decides how a file is written. Plain MicroPython: runs on the Pico and on
CPython alike.
"""

import os


class Files:
    _apath = None  # the file `append` keeps open
    _afile = None

    def _release(self, path):
        if self._apath == path or path is None:
            f = self._afile
            self._afile = self._apath = None
            if f is not None:
                f.close()

    def read(self, path):
        """The file's bytes; OSError if it is missing."""
        self._release(path)
        with open(path, "rb") as f:
            return f.read()

    def readinto(self, path, buf):
        """Read up to len(buf) bytes of the file into `buf`; returns the count."""
        self._release(path)
        with open(path, "rb") as f:
            n = f.readinto(buf)
        return n or 0

    def write(self, path, data):
        """Write `data` over the file in place. On littlefs the old content
        stays until close, so a cut leaves old or new; elsewhere a cut may
        leave a torn file, which callers must detect."""
        with open(path, "wb") as f:
            f.write(data)

    def replace(self, path, data):
        """Write `data` to a temporary file and rename it over `path`: a cut
        leaves either the old or the new content (atomic on littlefs and POSIX)."""
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, path)

    def append(self, path, data):
        """Append and sync. The file stays open for the next append: littlefs
        then goes on programming the same block, where reopening would copy
        the file's last block to a fresh one, an erase per append
        (bench/wear.py: about 10x the erases of an outage)."""
        if self._apath != path:
            self._release(None)
            self._afile = open(path, "ab")
            self._apath = path
        try:
            self._afile.write(data)
            self._afile.flush()
        except OSError:
            self._release(None)
            raise

    def close(self):
        self._release(None)

    def remove(self, path):
        self._release(path)
        os.remove(path)

    def listdir(self, path):
        return os.listdir(path)

    def mkdir(self, path):
        try:
            os.mkdir(path)
        except OSError:
            pass  # exists already

    def free_blocks(self, path):
        """Flash blocks free on the file system holding `path`, or None."""
        try:
            st = os.statvfs(path)
        except (OSError, AttributeError):
            return None
        return st[4]

    def size(self, path):
        self._release(path)
        return os.stat(path)[6]
