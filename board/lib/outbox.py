"""Readings waiting to be published, oldest first, in one preallocated buffer.

A reading is (channel, kind, monotonic ms, watts, pulse total) in a 16-byte
record of one `bytearray`: no heap object per reading, and building the queue
allocates nothing but that buffer (a `[0] * n` list per field would take as
much again in temporaries at boot). Kind 0 is a live reading, 1 a revision.

Times are kept to 48 bits of milliseconds (8900 years): a reading queued
through an outage of any length keeps its own time (a 32-bit ms clock would
wrap after 49.7 days). Pulse totals are kept modulo 2**32 and rebuilt as
the value nearest the current total when read back (a reading is never 2
billion pulses away from the present; after a power cut it can be ahead).

When the queue is full the oldest reading is dropped, counted and logged
(once per outage, then every 1000th); the energy total survives a drop
because every reading carries the cumulative pulse count. `capacity_for`
sizes the queue from the memory really free, so a QUEUE_SIZE no board can
hold is cut down with a log line instead of ending the boot in MemoryError.
"""

import struct

RECORD = 16
_FMT = "<BBHIfI"
_MASK32 = 0xFFFFFFFF
# Heap kept free for sockets, TLS and the loop after the queue is allocated
# (the App sizes the queue last). With MQTT_TLS, MicroPython's mbedTLS config
# (extmod/mbedtls/mbedtls_config_common.h) has a 16 KB in and a 4 KB out
# record buffer (~21 KB with overheads); the handshake state and the broker's
# certificate chain add an estimated 10-15 KB (not measured: the test
# interpreter has no ssl). With umqtt.simple's code (3.3 KB) and a message
# (under 2 KB, both measured by bench/heap.py) that leaves ~7 KB for
# fragmentation. Plain MQTT needs far less; one figure keeps the queue the
# same size whichever way a board connects.
RESERVE_BYTES = 48 * 1024
MIN_CAPACITY = 16


def capacity_for(wanted, heap_free, log=None):
    """The queue length to allocate: `wanted`, or less if the heap cannot hold
    it with RESERVE_BYTES to spare."""
    fits = (heap_free - RESERVE_BYTES) // RECORD
    if fits < MIN_CAPACITY:
        fits = MIN_CAPACITY
    if wanted <= fits:
        return wanted
    if log is not None:
        log("queue: QUEUE_SIZE=%d needs %d KB but %d KB are free; keeping %d readings" % (
            wanted, wanted * RECORD // 1024, heap_free // 1024, fits))
    return fits


def nearest(low32, total):
    """The pulse total whose low 32 bits are `low32`, nearest to `total` (a
    queued reading can be ahead of the current total after a power cut)."""
    d = (low32 - total) & _MASK32
    return total + d if d < 0x80000000 else total - (0x100000000 - d)


class Outbox:
    def __init__(self, capacity, log=None):
        self.capacity = capacity
        self._buf = bytearray(capacity * RECORD)
        self._head = 0
        self.size = 0
        self.dropped = 0
        self.log = log

    def push(self, channel, mono_ms, watts, pulses, kind=0):
        if self.size == self.capacity:
            self._head = (self._head + 1) % self.capacity
            self.size -= 1
            self.dropped += 1
            if self.log is not None and self.dropped % 1000 == 1:
                self.log("queue: full at %d readings, dropping the oldest (%d dropped)" % (
                    self.capacity, self.dropped))
        i = (self._head + self.size) % self.capacity
        struct.pack_into(_FMT, self._buf, i * RECORD, channel | (kind << 4), 0,
                         (mono_ms >> 32) & 0xFFFF, mono_ms & _MASK32, watts, pulses & _MASK32)
        self.size += 1

    def raw(self, k):
        """(channel, kind, mono ms, watts, pulses mod 2**32) of the k-th oldest."""
        i = (self._head + k) % self.capacity
        ck, _, hi, lo, watts, n = struct.unpack_from(_FMT, self._buf, i * RECORD)
        return ck & 15, ck >> 4, (hi << 32) | lo, watts, n

    def peek(self, now_ms, totals):
        """(channel, mono ms, watts, pulses, kind) of the oldest reading;
        `totals` holds each channel's current pulse total."""
        ch, kind, t, watts, n = self.raw(0)
        return ch, t, watts, nearest(n, totals[ch]), kind

    def lift(self, channel, pulses):
        """Add `pulses` to every queued live reading of `channel` (its total
        was raised after they were taken)."""
        for k in range(self.size):
            i = (self._head + k) % self.capacity
            off = i * RECORD
            ck = self._buf[off]
            if ck == channel:  # kind 0 only
                n = struct.unpack_from("<I", self._buf, off + 12)[0]
                struct.pack_into("<I", self._buf, off + 12, (n + pulses) & _MASK32)

    def pop(self):
        self._head = (self._head + 1) % self.capacity
        self.size -= 1
