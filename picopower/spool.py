"""A bounded on-disk FIFO of points, kept while the database is down.

Append-only JSON-lines segment files `spool-<seq>.jsonl` in one directory,
fsync'ed on every append, so a point acknowledged to the broker after
spooling survives a crash of the bridge or the machine. Drained oldest first;
a segment file is deleted once every point in it is stored. A restarted
bridge finds the files and drains them.

Limits: `max_bytes` in total (appends beyond it raise SpoolFull, and a full
disk raises OSError ENOSPC with nothing half-written left behind: the bridge
then stops acknowledging and the broker keeps the messages); a segment holds
up to `segment_records` points. The position inside the oldest segment is
kept in memory only: after a crash up to one segment is written again, which
is harmless (same timestamp, same point). A torn last line from a crash is
skipped and counted in `corrupt`.

Not thread-safe: one thread (the bridge's worker) uses it.
"""

import json
import os
import re

_NAME = re.compile(r"^spool-(\d{10})\.jsonl$")


class SpoolFull(OSError):
    pass


class Spool:
    def __init__(self, directory, max_bytes=100 * 1024 * 1024, segment_records=5000):
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_records = segment_records
        os.makedirs(directory, exist_ok=True)
        self.corrupt = 0
        self._segments = []          # seq numbers, oldest first
        self._sizes = {}
        self._counts = {}
        for name in sorted(os.listdir(directory)):
            m = _NAME.match(name)
            if m:
                seq = int(m.group(1))
                path = self._path(seq)
                self._segments.append(seq)
                self._sizes[seq] = os.path.getsize(path)
                with open(path, "rb") as f:
                    self._counts[seq] = sum(1 for ln in f if ln.strip())
        self._writer = None          # (seq, file) of the segment being appended to; never one found at start
        self._head = None            # (seq, records) of the oldest segment, read into memory
        self._pos = 0                # records of the head already consumed

    def _path(self, seq):
        return os.path.join(self.dir, "spool-%010d.jsonl" % seq)

    @property
    def depth(self):
        return sum(self._counts.values()) - self._pos

    @property
    def bytes(self):
        return sum(self._sizes.values())

    def append(self, records):
        if not records:
            return
        data = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in records).encode()
        if self.bytes + len(data) > self.max_bytes:
            raise SpoolFull("spool %s is full (%d of %d bytes)" % (self.dir, self.bytes, self.max_bytes))
        if self._writer is None or self._counts[self._writer[0]] >= self.segment_records:
            self._rotate()
            seq = (self._segments[-1] + 1) if self._segments else 1
            # unbuffered: a write the disk refused must not linger in a buffer that a later
            # close() would try to flush again (and fail with ENOSPC)
            f = open(self._path(seq), "ab", buffering=0)
            self._segments.append(seq)
            self._sizes[seq] = 0
            self._counts[seq] = 0
            self._writer = (seq, f)
            _fsync_dir(self.dir)
        seq, f = self._writer
        try:
            view = memoryview(data)
            while view:
                view = view[f.write(view):]
            os.fsync(f.fileno())
        except OSError:
            # do not leave a half-written batch that a later append would follow
            try:
                os.ftruncate(f.fileno(), self._sizes[seq])
            except OSError:
                self._rotate()  # a torn tail is skipped on reading; the next append starts a new file
            raise
        self._sizes[seq] += len(data)
        self._counts[seq] += len(records)

    def _rotate(self):
        if self._writer is not None:
            f, self._writer = self._writer[1], None
            try:
                f.close()
            except OSError:
                pass  # unbuffered: nothing left to lose

    def peek(self, n):
        """Up to n oldest records (from the oldest segment only)."""
        while self._segments:
            seq = self._segments[0]
            if self._head is None or self._head[0] != seq:
                if self._writer is not None and self._writer[0] == seq:
                    self._rotate()
                self._head = (seq, self._read(seq))
                self._pos = 0
                # the count may include torn lines that were skipped
                self._counts[seq] = len(self._head[1])
            records = self._head[1]
            if self._pos < len(records):
                return records[self._pos:self._pos + n]
            self._drop_head()
        return []

    def consume(self, n):
        """Marks the n records returned by the last peek() as stored."""
        self._pos += n
        if self._head is not None and self._pos >= len(self._head[1]):
            self._drop_head()

    def _drop_head(self):
        seq = self._head[0] if self._head else self._segments[0]
        if self._writer is not None and self._writer[0] == seq:
            self._rotate()
        try:
            os.unlink(self._path(seq))
        except FileNotFoundError:
            pass
        self._segments.remove(seq)
        self._sizes.pop(seq, None)
        self._counts.pop(seq, None)
        self._head = None
        self._pos = 0

    def _read(self, seq):
        out = []
        with open(self._path(seq), "rb") as f:
            for ln in f:
                if not ln.strip():
                    continue
                try:
                    out.append(json.loads(ln))
                except ValueError:
                    self.corrupt += 1
        return out

    def close(self):
        self._rotate()


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
