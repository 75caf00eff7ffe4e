"""What a reset must not forget, in the RP2040 watchdog's scratch registers.

SCRATCH0-3 keep their value through a watchdog reset, `machine.reset()` and a
soft reset (the SDK's reboot magic uses 4-7); a power cut clears them. The
board writes them every loop pass (a register write, no flash):

    SCRATCH0-2  channels 0-2: energy.EnergyStore.scratch_word (a 4th channel
                falls back to its flash file, at most one persist interval)
    SCRATCH3    0xA5 << 20 | resets since power-on << 12
                | readings in RAM not yet on flash (up to 255) << 4 | 1 once the clock synced
                (below 2^30: the loop writes it every pass without a big int)

The marker 0xA5 tells a reset from a power-on (0 after a cut), where
machine.reset_cause() cannot: after a soft reset it still names the last
hardware reset. Readings in RAM at a reset are lost; the next boot counts
them as "dropped" if the clock was synced (they were less than 60 s old), or
as "unstamped" if that boot never learnt the time.
"""

MAGIC = 0xA5
CHANNELS = 3
META = 3


class Boot:
    """What the scratch registers said at this boot."""

    def __init__(self, board):
        self.board = board
        meta = board.scratch_read(META)
        self.valid = (meta >> 20) == MAGIC
        if self.valid:
            # 1 watchdog, 2 soft reset or machine.reset()
            self.cause = board.reset_cause()
            self.resets = ((meta >> 12) & 0xFF) + 1
            lost = (meta >> 4) & 0xFF
            synced = meta & 1
        else:
            self.cause = 0
            self.resets = 0
            lost = 0
            synced = 0
        if self.resets > 0xFF:
            self.resets = 0xFF
        self.lost = lost if synced else 0
        self.unstamped = 0 if synced else lost
        self._words = [board.scratch_read(i) for i in range(CHANNELS)] if self.valid else None

    def word(self, channel):
        """The energy word kept for `channel` before this boot, or None."""
        if self._words is None or channel >= CHANNELS:
            return None
        return self._words[channel]

    def keep(self, channel, word):
        if channel < CHANNELS:
            self.board.scratch_write(channel, word)

    def keep_meta(self, in_ram, synced):
        if in_ram > 0xFF:
            in_ram = 0xFF
        self.board.scratch_write(META, (MAGIC << 20) | (self.resets << 12) | (in_ram << 4) | (1 if synced else 0))


class Keeper:
    """Keeps one channel's energy word in its scratch register, exact to the
    pulse: the pulse IRQ rewrites it after counting, so even the pulses of
    the 8 s before a watchdog reset are in it. The word is the low 14 bits
    of the total on flash (or being written) << 16 | the pulses since (at
    most 65535): below 2^30, so the IRQ never makes a big int."""

    def __init__(self, write, index, capture):
        self._write = write
        self._i = index
        self._cap = capture
        self._inner = capture.handler
        self.part = 0
        self.c0 = 0
        # Fetching a bound method allocates; bind once so the IRQ does not.
        self.handler = self._irq

    def _irq(self, pin):
        self._inner(pin)
        d = (self._cap.count - self.c0) & 0x3FFFFFFF
        if d > 0xFFFF:
            d = 0xFFFF
        self._write(self._i, self.part | d)

    def sync(self, saved, base):
        """From the loop: name `saved`, the total on flash or about to be
        written; the channel's total is `base` + the capture's total."""
        cap = self._cap
        for _ in range(3):
            n = cap.count
            d = base + cap.total() - saved
            if d < 0:
                d = 0
            part = (saved & 0x3FFF) << 16
            self.c0 = (n - d) & 0x3FFFFFFF
            self.part = part
            self._write(self._i, part | (d if d < 0xFFFF else 0xFFFF))
            if cap.count == n:
                return
