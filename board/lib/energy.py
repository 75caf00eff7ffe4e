"""The energy total, exact in pulses, kept across reboots and power cuts.

The total is the pulses counted before this boot (read from flash) plus the
pulses counted since. It is written to flash at most once per
`interval_ms` and only when it changed, so a power cut loses at most one
interval's pulses (60 s at the default). Flash writes on the Pico run with
interrupts disabled and each sector is rated for ~100k erases; the file is
small enough to live inside littlefs' metadata log, so a save is a short
append there, not a block erase (figures: bench/wear.py).

A watchdog or soft reset loses nothing: a watchdog scratch register holds
the low 14 bits of the total last sent to flash and the pulses counted since
(scratch.Keeper, written by the pulse interrupt itself), `restore` rebuilds
the total from it, and a total restored that way is saved at once, so a
reset loop of any period keeps the flash current too.

Saves alternate between two files, `energy.dat` and `energy.dat.2`, each
written in place with a check value, and the larger valid one is the total:
a cut during a write leaves the other, one interval older. On littlefs a file
written in place changes only when it is closed, and that costs one metadata
commit, where a temporary file and a rename cost three (bench/wear.py). A
damaged file is logged and counted (`damaged`, shown in the health message)
and the other is used, or 0. A meter-constant change converts the stored
total.
"""

import files as _files

FILE = "energy.dat"


def _check(pulses, imp):
    return (pulses * 7919 + imp * 104729 + 12345) % 1000000007


def encode(pulses, imp):
    return "%d %d %d\n" % (pulses, imp, _check(pulses, imp))


def decode(text, imp):
    """Stored pulses at meter constant `imp`, or None if the text is damaged."""
    parts = text.split()
    if len(parts) != 3:
        return None
    try:
        pulses, stored_imp, check = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if pulses < 0 or stored_imp <= 0 or check != _check(pulses, stored_imp):
        return None
    if stored_imp != imp:
        pulses = (pulses * imp + stored_imp // 2) // stored_imp
    return pulses


class EnergyStore:
    def __init__(self, imp_per_kwh, interval_ms, path=FILE, log=print, fs=None):
        self.fs = fs or _files.Files()
        self.imp = imp_per_kwh
        self.interval_ms = interval_ms
        self.path = path
        self.log = log
        self.base = 0
        self.saved = 0
        self.writes = 0
        self.failures = 0
        self.damaged = 0
        self.converted = False
        self._slot = 0  # 0: write `path` next, 1: write `path`.2
        self._next_ms = interval_ms

    def _read(self, path):
        """(found, pulses or None if damaged)."""
        try:
            text = bytes(self.fs.read(path)).decode()
        except OSError:
            return False, None
        except UnicodeError:
            return True, None
        value = decode(text, self.imp)
        if value is not None and text.split()[1] != str(self.imp):
            self.converted = True  # saved at another meter constant
        return True, value

    def load(self):
        """The largest valid total of the two slots (a total only grows, so
        that is the newest); a damaged slot is logged, counted and skipped."""
        best = None
        found_any = False
        # ".tmp" is where firmware before the two slots left its backup.
        for path in (self.path, self.path + ".2", self.path + ".tmp"):
            found, value = self._read(path)
            found_any = found_any or found
            if found and value is None:
                self.damaged += 1
                self.log("energy: %s is damaged, skipped" % path)
            if value is not None and (best is None or value > best):
                best = value
                self._slot = 1 if path == self.path else 0
        if best is None:
            self.log("energy: %s, starting at 0" % ("saved total damaged" if found_any else "no saved total"))
            best = 0
        self.base = self.saved = best
        return best

    def restore(self, word):
        """Take a scratch word from before a reset; the flash file may hold the
        total it names or the one before (a reset during the save). Not after
        a meter-constant change: the word counts pulses of the old constant."""
        if self.converted:
            return self.base
        low = (word >> 16) & 0x3FFF
        saved = self.saved + ((low - self.saved) & 0x3FFF)
        total = saved + (word & 0xFFFF)
        if total > self.base:
            self.base = total
            self._next_ms = 0  # save at once: the next cut may be a power cut
        return self.base

    def lift(self, published):
        """Raise the stored total to `published`, the newest total the broker
        holds from before this boot (after a power cut it can be ahead of
        flash by up to one persist interval); returns the pulses added."""
        gap = published - self.base
        if gap <= 0:
            return 0
        self.base += gap
        self._next_ms = 0
        return gap

    def due(self, now_ms):
        return now_ms >= self._next_ms

    def save(self, total, now_ms):
        """Write `total` if it changed; returns True if flash was written."""
        self._next_ms = now_ms + self.interval_ms
        if total == self.saved:
            return False
        path = self.path + ".2" if self._slot else self.path
        try:
            self.fs.write(path, encode(total, self.imp).encode())
        except OSError as e:
            self.failures += 1
            self.log("energy: cannot save total (%s), retrying in %d s" % (e, self.interval_ms // 1000))
            return False
        self.saved = total
        self.writes += 1
        self._slot = 1 - self._slot
        return True
