"""Unsent readings kept on flash, so a reset or a power cut loses none of them.

`Durable` has the outbox's interface (push, peek, pop, size) over two stores:
the RAM outbox and segment files on flash. While the broker acknowledges,
readings go from RAM to the broker and nothing is written. While the link is
not ONLINE every reading goes to flash in the loop pass that takes it (one
small synced append, ~10 bytes), so a watchdog reset or a power cut loses no
reading, and the pulse total it carries survives with it. Online but behind
(a slow broker), a reading that has waited `flush_age_ms` (50 s) in RAM is
moved with the rest. Erases per day: bench/wear.py. Publishing takes flash
first (older), then RAM; a segment is removed once all its readings are
published.

Only readings with a wall-clock time are written (unix s): a boot that has
not synced its clock keeps them in RAM, and if it resets before the sync they
cannot be stamped (the app counts them as "unstamped" through the watchdog
scratch registers).

Format: `<dir>/<8 digits>.q` segments of at most SEG_BYTES (one 4 KiB flash
block), each a run of frames:

    header  0xF7, readings n (1-255), channel mask, 1 (version),
            base unix s (u32), then per channel in the mask its base pulse
            total (u32, mod 2**32), then a 16-bit check of header and readings
    reading 8 bytes: channel (2 bits) kind (1 bit, 1 = revision)
            seconds from base (13 bits, signed), watts in 0.1 W (u24),
            pulses from the channel's base (s24)
    short   0xF9, one reading against the segment's last full frame, an
            8-bit check: 10 bytes (a full frame comes when a reading is
            over 68 min or 8 million pulses from that base)

About 10 bytes a reading: a week at a 10 s interval (60,480 readings) takes
~150 segments of the ~190 blocks free on a Pico W. At most `max_segments` are kept; past that the oldest segment is dropped,
logged and counted. A boot never appends to a segment an earlier boot left,
and a frame that fails its check (a write torn by a power cut on a host file
system; littlefs keeps the last synced state) ends its segment and is counted.

After a reconnect the app sets `floor` from the broker: a flash reading at or
before the newest timestamp already published for its channel is skipped (it
was published before a power cut that came before its segment was removed),
and no reading is published with fewer pulses than one before it.
"""

import struct

from outbox import nearest

MAGIC = 0xF7
SHORT = 0xF9
SHORT_SIZE = 10
REC = 8
SEG_BYTES = 4096
MAX_SEGMENTS = 160
RESERVE_BLOCKS = 12  # flash blocks left free for littlefs and the energy files
FLUSH_AGE_MS = 50000
_MAX_N = 255
_DT = 4095
_S24 = 0x7FFFFF
_W24 = 0xFFFFFF
_MASK32 = 0xFFFFFFFF


def _bits(mask):
    return (mask & 1) + (mask >> 1 & 1) + (mask >> 2 & 1) + (mask >> 3 & 1)


def _check(buf, off, hl, n):
    a = 1
    b = 0
    for i in range(off, off + hl - 2):
        a = (a + buf[i]) % 251
        b = (b + a) % 251
    for i in range(off + hl, off + hl + n * REC):
        a = (a + buf[i]) % 251
        b = (b + a) % 251
    return (b << 8) | a


def frame_size(mask, n):
    return 10 + 4 * _bits(mask) + REC * n


def encode_frame(buf, off, base_s, bases, recs):
    """Write a frame at `off`; `bases` {channel: pulses}, `recs` a list of
    (channel, kind, unix s, watts, pulses). Returns its size."""
    mask = 0
    for ch in bases:
        mask |= 1 << ch
    buf[off] = MAGIC
    buf[off + 1] = len(recs)
    buf[off + 2] = mask
    buf[off + 3] = 1
    struct.pack_into("<I", buf, off + 4, base_s)
    p = off + 8
    for ch in range(4):
        if mask >> ch & 1:
            struct.pack_into("<I", buf, p, bases[ch] & _MASK32)
            p += 4
    hl = p + 2 - off
    p += 2
    p = encode_frame_records(buf, p, base_s, bases, recs)
    struct.pack_into("<H", buf, off + hl - 2, _check(buf, off, hl, len(recs)))
    return p - off


def encode_frame_records(buf, p, base_s, bases, recs):
    for ch, kind, ts, watts, pulses in recs:
        w0 = (ch << 14) | (kind << 13) | ((ts - base_s) & 0x1FFF)
        w = int(watts * 10 + 0.5)
        if w < 0:
            w = 0
        elif w > _W24:
            w = _W24
        dp = (pulses - bases[ch]) & 0xFFFFFF
        buf[p] = w0 & 0xFF
        buf[p + 1] = w0 >> 8
        buf[p + 2] = w & 0xFF
        buf[p + 3] = (w >> 8) & 0xFF
        buf[p + 4] = w >> 16
        buf[p + 5] = dp & 0xFF
        buf[p + 6] = (dp >> 8) & 0xFF
        buf[p + 7] = dp >> 16
        p += REC
    return p


def _check8(buf, off):
    a = 1
    b = 0
    for i in range(off, off + SHORT_SIZE - 1):
        a = (a + buf[i]) % 251
        b = (b + a) % 251
    return (a * 7 + b) & 0xFF


def encode_short(buf, off, base_s, bases, rec):
    """One reading relative to the segment's last full frame: 10 bytes."""
    buf[off] = SHORT
    encode_frame_records(buf, off + 1, base_s, bases, (rec,))
    buf[off + SHORT_SIZE - 1] = _check8(buf, off)
    return SHORT_SIZE


def fits_short(base_s, bases, ch, ts, pulses):
    if ch not in bases or ts - base_s > _DT or base_s - ts > _DT + 1:
        return False
    d = (pulses - bases[ch]) & _MASK32
    return d <= _S24 or d >= _MASK32 - _S24


def read_frame(buf, off, end, cur=None):
    """(n, header length, size, base unix s, [base pulses by channel]) of the
    frame at `off`, or None if there is none or it is damaged. `cur`: (base
    unix s, bases) of the segment's last full frame, for a short frame."""
    if end - off >= SHORT_SIZE and buf[off] == SHORT:
        if cur is None or buf[off + SHORT_SIZE - 1] != _check8(buf, off):
            return None
        return 1, 1, SHORT_SIZE, cur[0], cur[1]
    if end - off < 14 or buf[off] != MAGIC or buf[off + 3] != 1:
        return None
    n = buf[off + 1]
    mask = buf[off + 2]
    if n == 0 or mask == 0 or mask > 15:
        return None
    hl = 10 + 4 * _bits(mask)
    size = hl + REC * n
    if off + size > end:
        return None
    if struct.unpack_from("<H", buf, off + hl - 2)[0] != _check(buf, off, hl, n):
        return None
    base_s = struct.unpack_from("<I", buf, off + 4)[0]
    bases = [0, 0, 0, 0]
    p = off + 8
    for ch in range(4):
        if mask >> ch & 1:
            bases[ch] = struct.unpack_from("<I", buf, p)[0]
            p += 4
    return n, hl, size, base_s, bases


def read_record(buf, off, base_s, bases):
    """(channel, kind, unix s, watts, pulses mod 2**32) of the reading at `off`."""
    w0 = buf[off] | (buf[off + 1] << 8)
    dt = w0 & 0x1FFF
    if dt & 0x1000:
        dt -= 0x2000
    ch = w0 >> 14
    dp = buf[off + 5] | (buf[off + 6] << 8) | (buf[off + 7] << 16)
    if dp & 0x800000:
        dp -= 0x1000000
    watts = (buf[off + 2] | (buf[off + 3] << 8) | (buf[off + 4] << 16)) / 10
    return ch, (w0 >> 13) & 1, base_s + dt, watts, (bases[ch] + dp) & _MASK32


def count_frames(buf, end, last=None):
    """Readings in a segment's bytes, and whether it ended in damage; `last`
    (a dict) gets each channel's newest live pulse total (mod 2**32)."""
    off = 0
    total = 0
    cur = None
    while off < end:
        f = read_frame(buf, off, end, cur)
        if f is None:
            return total, True
        cur = (f[3], f[4])
        if last is not None:
            for i in range(f[0]):
                rec = read_record(buf, off + f[1] + i * REC, f[3], f[4])
                if rec[1] == 0:
                    last[rec[0]] = rec[4]
        total += f[0]
        off += f[2]
    return total, False


class Durable:
    def __init__(self, ram, files, directory, wall, log):
        self.ram = ram
        self.files = files
        self.dir = directory
        self.wall = wall
        self.log = log
        self.on_flash = 0  # readings on flash not yet published
        self.spilled = 0  # readings written to flash since boot
        self.damaged = 0  # damaged frames found (their readings are lost)
        self.flash_dropped = 0  # readings in segments dropped for room
        self.failures = 0
        self.floor = {}  # channel -> [unix s, pulses] of the newest reading published
        self.floor_changed = False
        self.last_pulses = {}  # channel -> newest pulse total on flash at boot (mod 2**32)
        self.flush_age_ms = FLUSH_AGE_MS
        self.max_segments = MAX_SEGMENTS
        self._segs = []
        self._counts = {}  # segment -> readings in it (unpublished ones, for the read one)
        self._next_seq = 0
        self._wseq = -1
        self._wlen = 0
        self._wbase = None  # (base unix s, {channel: pulses}) of the write segment's last full frame
        self._wbuf = bytearray(SEG_BYTES)
        self._rbuf = bytearray(SEG_BYTES)
        self._rseq = -1
        self._rlen = 0
        self._roff = 0
        self._rframe = None
        self._rcur = None
        self._ri = 0
        self._since = -1
        self._src = 0
        self._peeked = None

    @property
    def size(self):
        return self.ram.size + self.on_flash

    @property
    def capacity(self):
        # The App puts in the RAM queue last, sized from the heap left.
        return self.ram.capacity

    @property
    def dropped(self):
        return self.ram.dropped + self.flash_dropped

    def _path(self, seq):
        return "%s/%08d.q" % (self.dir, seq)

    def load(self, free_blocks=None, feed=None):
        """Find the segments an earlier boot left; returns the readings in them.
        `free_blocks`: flash blocks free now, to bound the segments kept.
        `feed` is called after each segment: checking a week of readings
        (160 segments, every byte summed in Python) takes the Pico seconds,
        longer than the watchdog allows in one go."""
        self.files.mkdir(self.dir)
        try:
            names = self.files.listdir(self.dir)
        except OSError:
            names = []
        segs = []
        for name in names:
            if name.endswith(".q"):
                try:
                    segs.append(int(name[:-2]))
                except ValueError:
                    pass
        segs.sort()
        total = 0
        for seq in segs:
            try:
                n = self.files.readinto(self._path(seq), self._rbuf)
            except OSError:
                n = 0
            count, bad = count_frames(self._rbuf, n, self.last_pulses)
            if bad:
                self.damaged += 1
                self.log("queue: %s ends in a damaged frame (a cut while writing?); %d readings before it kept" % (
                    self._path(seq), count))
            self._counts[seq] = count
            total += count
            if feed is not None:
                feed()
        self._segs = segs
        self._next_seq = segs[-1] + 1 if segs else 0
        self.on_flash = total
        if free_blocks is not None:
            room = len(segs) + free_blocks - RESERVE_BLOCKS
            if room < self.max_segments:
                self.max_segments = room if room > 1 else 1
        if total:
            self.log("queue: %d readings on flash from before the restart" % total)
        return total

    def push(self, channel, mono_ms, watts, pulses, kind=0):
        self.ram.push(channel, mono_ms, watts, pulses, kind)

    def tick(self, now_ms, online=True):
        """Move RAM to flash: at once while the link is not online (a reset
        then loses nothing), else once a reading has waited `flush_age_ms`."""
        if self.ram.size == 0:
            self._since = -1
            return False
        if self._since < 0:
            self._since = now_ms
        if not self.wall.synced or (online and now_ms - self._since < self.flush_age_ms):
            return False
        self.flush()
        self._since = now_ms if self.ram.size else -1
        return True

    def _frame(self, start, room):
        """The longest run of RAM readings from `start` that one frame of at
        most `room` bytes holds: (count, base unix s, {channel: pulses}, [records])."""
        ram = self.ram
        recs = []
        bases = {}
        base_s = None
        room -= 10
        k = start
        while k < ram.size and k - start < _MAX_N:
            ch, kind, t, watts, n = ram.raw(k)
            ts = self.wall.unix_ms(t) // 1000
            if base_s is None:
                base_s = ts
            if ts - base_s > _DT or base_s - ts > _DT + 1:
                break  # seconds from base: 13 bits, signed
            new = ch not in bases
            base = bases[ch] if not new else n
            d = (n - base) & _MASK32
            if d > _S24 and d < _MASK32 - _S24:
                break
            cost = REC + (4 if new else 0)
            if cost > room:
                break
            room -= cost
            if new:
                bases[ch] = n
            recs.append((ch, kind, ts, watts, n))
            k += 1
        return k - start, base_s, bases, recs

    def flush(self):
        """Write every RAM reading to flash; on a write error they stay in RAM.
        A reading goes as a 10-byte short frame against the segment's last
        full frame when it can, else in a full frame."""
        ram = self.ram
        buf = self._wbuf
        while ram.size:
            if self._wseq < 0 or self._wlen > SEG_BYTES - 32:
                self._new_segment()
            room = SEG_BYTES - self._wlen
            base = self._wbase
            p = 0
            k = 0
            while k < ram.size:
                ch, kind, t, watts, n = ram.raw(k)
                ts = self.wall.unix_ms(t) // 1000
                if base is not None and p + SHORT_SIZE <= room and fits_short(base[0], base[1], ch, ts, n):
                    p += encode_short(buf, p, base[0], base[1], (ch, kind, ts, watts, n))
                    k += 1
                    continue
                if room - p < 32:
                    break
                cnt, base_s, bases, recs = self._frame(k, room - p)
                p += encode_frame(buf, p, base_s, bases, recs)
                base = (base_s, bases)
                k += cnt
            if k == 0:
                self._wseq = -1
                continue
            try:
                self.files.append(self._path(self._wseq), memoryview(buf)[:p])
            except OSError as e:
                self.failures += 1
                self._wseq = -1  # a partly written segment is not appended to again
                if len(self._segs) > 2:
                    # Likely a full flash: keep one segment fewer, the oldest goes next time.
                    self.max_segments = len(self._segs) - 1
                self.log("queue: cannot write to flash (%s); %d readings stay in RAM" % (e, ram.size))
                return
            for _ in range(k):
                ram.pop()
            self._wbase = base
            self._wlen += p
            self._counts[self._wseq] = self._counts.get(self._wseq, 0) + k
            self.on_flash += k
            self.spilled += k

    def _new_segment(self):
        while len(self._segs) >= self.max_segments:
            self._drop_oldest()
        self._wseq = self._next_seq
        self._next_seq += 1
        self._wlen = 0
        self._wbase = None
        self._segs.append(self._wseq)
        self._counts[self._wseq] = 0

    def _drop_oldest(self):
        seq = self._segs[0]
        lost = self._counts.get(seq, 0)
        self.flash_dropped += lost
        self.log("queue: flash queue full (%d segments); oldest %d readings dropped" % (
            len(self._segs), lost))
        self._remove(seq, lost)

    def _remove(self, seq, unpublished):
        self._segs.remove(seq)
        self._counts.pop(seq, None)
        self.on_flash -= unpublished
        if self.on_flash < 0 or not self._segs:
            self.on_flash = 0
        if seq == self._rseq:
            self._rseq = -1
            self._rframe = None
        if seq == self._wseq:
            self._wseq = -1
        try:
            self.files.remove(self._path(seq))
        except OSError as e:
            self.log("queue: cannot remove %s (%s)" % (self._path(seq), e))

    def _flash_head(self):
        """The oldest unpublished flash reading, or None."""
        while self._segs and self.on_flash > 0:
            if self._rseq < 0:
                seq = self._segs[0]
                if seq == self._wseq:
                    self._wseq = -1  # appends go to a new segment from now on
                try:
                    n = self.files.readinto(self._path(seq), self._rbuf)
                except OSError:
                    n = 0
                self._rseq = seq
                self._rlen = n
                self._roff = 0
                self._rframe = None
                self._rcur = None
                self._ri = 0
            while self._roff < self._rlen:
                if self._rframe is None:
                    self._rframe = read_frame(self._rbuf, self._roff, self._rlen, self._rcur)
                    self._ri = 0
                    if self._rframe is None:
                        break  # damage: the rest of the segment is unreadable
                    self._rcur = (self._rframe[3], self._rframe[4])
                f = self._rframe
                while self._ri < f[0]:
                    rec = read_record(self._rbuf, self._roff + f[1] + self._ri * REC, f[3], f[4])
                    if not self._published(rec):
                        return rec
                    self._ri += 1
                    self._count_out()
                self._roff += f[2]
                self._rframe = None
            self._remove(self._rseq, self._counts.get(self._rseq, 0))
        if not self._segs:
            self.on_flash = 0
        return None

    def _count_out(self):
        self.on_flash -= 1
        c = self._counts.get(self._rseq)
        if c:
            self._counts[self._rseq] = c - 1

    def _published(self, rec):
        f = self.floor.get(rec[0])
        return rec[1] == 0 and f is not None and rec[2] <= f[0]

    def peek(self, now_ms, totals):
        """(channel, mono ms, watts, pulses, kind) of the oldest reading."""
        rec = self._flash_head()
        if rec is not None:
            self._src = 1
            ch, kind, ts, watts, n = rec
            t = self.wall.mono_ms(ts * 1000)  # what link stamps back as `ts`
        else:
            self._src = 0
            ch, t, watts, n, kind = self.ram.peek(now_ms, totals)
            ts = self.wall.unix_ms(t) // 1000
        n = nearest(n, totals[ch])
        if kind == 0:
            f = self.floor.get(ch)
            if f is not None and n < f[1]:
                n = f[1]
        self._peeked = (ch, kind, ts, n)
        return ch, t, watts, n, kind

    def pop(self):
        ch, kind, ts, n = self._peeked
        if kind == 0:
            self.raise_floor(ch, ts, n)
            self.floor_changed = True
        if self._src:
            self._ri += 1
            self._count_out()
            f = self._rframe
            if self._ri >= f[0]:
                self._roff += f[2]
                self._rframe = None
                if self._roff >= self._rlen:
                    self._remove(self._rseq, self._counts.get(self._rseq, 0))
        else:
            self.ram.pop()

    def raise_floor(self, channel, unix_s, pulses):
        """The newest reading known published for `channel` (by this boot, or
        before it, as the broker says)."""
        f = self.floor.get(channel)
        if f is None:
            self.floor[channel] = [unix_s, pulses]
        else:
            if unix_s > f[0]:
                f[0] = unix_s
            if pulses > f[1]:
                f[1] = pulses
