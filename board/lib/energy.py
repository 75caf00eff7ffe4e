"""The energy total, exact in pulses, kept across reboots and power cuts.

The total is the pulses counted before this boot (read from flash) plus the
pulses counted since. It is written to flash at most once per
`interval_ms` and only when it changed, so a power cut loses at most one
interval's pulses. Flash writes on the Pico run with interrupts disabled and
each sector is rated for ~100k erases; littlefs spreads the wear, and the
default interval of 10 minutes makes at most 144 writes a day.

Each save writes a temporary file and renames it over the old one (atomic on
littlefs and on POSIX), with a check value, so a cut during a write leaves
the previous total. A meter-constant change converts the stored total.
"""

import os

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
    def __init__(self, imp_per_kwh, interval_ms, path=FILE, log=print):
        self.imp = imp_per_kwh
        self.interval_ms = interval_ms
        self.path = path
        self.log = log
        self.base = 0
        self.saved = 0
        self.writes = 0
        self.failures = 0
        self._next_ms = interval_ms

    def load(self):
        try:
            with open(self.path) as f:
                value = decode(f.read(), self.imp)
        except OSError:
            value = None
            self.log("energy: no saved total, starting at 0")
        if value is None:
            value = self._load_backup()
        self.base = self.saved = value
        return value

    def _load_backup(self):
        try:
            with open(self.path + ".tmp") as f:
                value = decode(f.read(), self.imp)
        except OSError:
            return 0
        if value is None:
            self.log("energy: saved total damaged, starting at 0")
            return 0
        return value

    def due(self, now_ms):
        return now_ms >= self._next_ms

    def save(self, total, now_ms):
        """Write `total` if it changed; returns True if flash was written."""
        self._next_ms = now_ms + self.interval_ms
        if total == self.saved:
            return False
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(encode(total, self.imp))
            os.rename(tmp, self.path)
        except OSError as e:
            self.failures += 1
            self.log("energy: cannot save total (%s), retrying in %d s" % (e, self.interval_ms // 1000))
            return False
        self.saved = total
        self.writes += 1
        return True
