"""Readings waiting to be published, oldest first, in preallocated arrays.

A reading is (channel, monotonic ms, watts, pulse total) in 13 bytes, no heap
object per reading. Times and totals are stored modulo 2**32 and rebuilt
against the current time and total when read back: a queued reading is never
49 days older, or 4 billion pulses behind, the present. When the queue is full
the oldest reading is dropped and counted; the energy total survives a drop
because every reading carries the cumulative pulse count. At the default 2880
slots and a 10 s interval the queue holds 8 hours of one channel in 37 KB.
"""

from array import array

_MASK32 = 0xFFFFFFFF


class Outbox:
    def __init__(self, capacity):
        self.capacity = capacity
        self._ch = array("B", bytes(capacity))
        self._t = array("L", [0] * capacity)
        self._w = array("f", [0.0] * capacity)
        self._n = array("L", [0] * capacity)
        self._head = 0
        self.size = 0
        self.dropped = 0

    def push(self, channel, mono_ms, watts, pulses, kind=0):
        if self.size == self.capacity:
            self._head = (self._head + 1) % self.capacity
            self.size -= 1
            self.dropped += 1
        i = (self._head + self.size) % self.capacity
        self._ch[i] = channel | (kind << 4)  # kind 0: live reading, 1: revision
        self._t[i] = mono_ms & _MASK32
        self._w[i] = watts
        self._n[i] = pulses & _MASK32
        self.size += 1

    def peek(self, now_ms, totals):
        """(channel, mono ms, watts, pulses, kind) of the oldest reading;
        `totals` holds each channel's current pulse total."""
        i = self._head
        ck = self._ch[i]
        ch = ck & 15
        t = now_ms - ((now_ms - self._t[i]) & _MASK32)
        n = totals[ch] - ((totals[ch] - self._n[i]) & _MASK32)
        return ch, t, self._w[i], n, ck >> 4

    def pop(self):
        self._head = (self._head + 1) % self.capacity
        self.size -= 1
