"""Flash wear of the firmware's own files, on a real littlefs with the Pico W's geometry.

    python3 bench/wear.py [--days N]

The firmware's energy store (board/lib/energy.py) and offline queue
(board/lib/spill.py) run on a virtual clock against littlefs 2 (PyPI
littlefs-python wraps the same C library MicroPython uses) through a block
device that counts every erase, in the geometry MicroPython's rp2 port gives
the Pico W:

    MICROPY_HW_FLASH_STORAGE_BYTES  848 KiB  (ports/rp2/boards/RPI_PICO_W/mpconfigboard.h)
    block size 4096, so 212 blocks
    progsize 256                              (ports/rp2/modules/_boot.py: VfsLfs2(bdev, progsize=256))
    readsize 32, lookahead 32                 (extmod/vfs_lfs.c defaults)
    cache_size 4 * max(read, prog) = 1024, block_cycles 100   (extmod/vfs_lfsx.c)

Scenarios, each a run of N days (default 7) at the default settings
(REPORT_INTERVAL_S 10, PERSIST_INTERVAL_S 60, 500 W average at 1000 imp/kWh
so the total changes every minute), all on one freshly formatted file system
holding the firmware's own files (about 30 KB, as after a deploy):

    online          the broker acknowledges: energy saves only
    offline         a week-long outage: every reading spilled, the energy saves
                    too; then the reconnect drains the queue
    reset loop      a watchdog reset every 20 s (a restored total is saved at once)

For each: erases per day (all blocks), the most-erased block's erases per
day, and the years until that block reaches 100k erases if the board lived
in that scenario for good. littlefs levels wear over free blocks (dynamic
wear levelling, metadata pairs relocated every block_cycles erases), so the
most-erased block is the figure that decides the flash's life.
"""

import argparse
import os
import sys

try:
    from littlefs import LittleFS, UserContext
except ImportError:  # pragma: no cover
    sys.exit("bench/wear.py needs littlefs-python: pip install littlefs-python")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from picopower.firmware import energy, files, outbox, spill  # noqa: E402

BLOCK = 4096
BLOCKS = 848 * 1024 // BLOCK
RATED_ERASES = 100000
DAY_S = 86400


class CountingFlash(UserContext):
    """A RAM block device that counts erases per block."""

    def __init__(self):
        super().__init__(BLOCK * BLOCKS)
        self.erases = [0] * BLOCKS

    def erase(self, cfg, block):
        self.erases[block] += 1
        return super().erase(cfg, block)


class LfsFiles(files.Files):
    """The firmware's file operations (files.Files) on littlefs-python."""

    def __init__(self, fs):
        self.fs = fs

    def read(self, path):
        self._release(path)
        with self.fs.open(path, "rb") as f:
            return f.read()

    def readinto(self, path, buf):
        data = self.read(path)[:len(buf)]
        buf[:len(data)] = data
        return len(data)

    def write(self, path, data):
        with self.fs.open(path, "wb") as f:
            f.write(bytes(data))

    def replace(self, path, data):
        self.write(path + ".tmp", data)
        self.fs.rename(path + ".tmp", path)

    def append(self, path, data):
        # As files.Files.append: the file stays open between appends, synced.
        if self._apath != path:
            self._release(None)
            try:
                self._afile = self.fs.open(path, "ab")
            except FileNotFoundError:  # MicroPython's "ab" creates; littlefs-python's does not
                self._afile = self.fs.open(path, "wb")
            self._apath = path
        self._afile.write(bytes(data))
        self._afile.flush()

    def remove(self, path):
        self._release(path)
        self.fs.remove(path)

    def listdir(self, path):
        return self.fs.listdir(path)

    def mkdir(self, path):
        try:
            self.fs.mkdir(path)
        except Exception:
            pass

    def size(self, path):
        self._release(path)
        return self.fs.stat(path).size


class Clock:
    def __init__(self):
        self.synced = True
        self.ms = 0

    def unix_ms(self, mono_ms):
        return 1800000000000 + mono_ms

    def mono_ms(self, unix_ms):
        return unix_ms - 1800000000000


def new_fs():
    flash = CountingFlash()
    fs = LittleFS(flash, block_size=BLOCK, block_count=BLOCKS, read_size=32, prog_size=256,
                  cache_size=1024, lookahead_size=32, block_cycles=100)
    # The firmware as deployed: ~30 KB of .mpy files that are only read.
    for i in range(20):
        with fs.open("/lib%02d.mpy" % i, "wb") as f:
            f.write(os.urandom(1500))
    return flash, fs


class Board:
    """The firmware's flash users on one file system, on a virtual clock."""

    def __init__(self, fs, persist_s=60, report_s=10):
        self.files = LfsFiles(fs)
        self.report_ms = report_s * 1000
        self.store = energy.EnergyStore(1000, persist_s * 1000, "/energy.dat", log=lambda s: None, fs=self.files)
        self.clock = Clock()
        self.box = spill.Durable(outbox.Outbox(2880), self.files, "/queue", self.clock, lambda s: None)
        self.store.load()
        self.box.load(BLOCKS - fs.used_block_count)
        self.ms = 0
        self.pulses = 0
        self.fs = fs
        self.min_free = BLOCKS - fs.used_block_count

    def run(self, seconds, online, watts=500, resets_every_s=0):
        end = self.ms + seconds * 1000
        since_boot = 0
        while self.ms < end:
            self.ms += self.report_ms
            since_boot += self.report_ms
            self.pulses += watts * self.report_ms // 3600000  # 1000 imp/kWh
            self.box.push(0, self.ms, float(watts), self.pulses)
            if online:
                while self.box.size:
                    self.box.peek(self.ms, [self.pulses])
                    self.box.pop()
            self.box.tick(self.ms, online)
            if self.ms % 3600000 == 0:
                self.min_free = min(self.min_free, BLOCKS - self.fs.used_block_count)
            if self.store.due(since_boot):
                self.store.save(self.pulses, since_boot)
            if resets_every_s and since_boot >= resets_every_s * 1000:
                # A watchdog reset: the total comes back from the scratch register
                # ahead of flash, and is saved at once.
                self.store = energy.EnergyStore(1000, self.store.interval_ms, "/energy.dat",
                                                log=lambda s: None, fs=self.files)
                self.store.load()
                self.store.base = self.pulses
                self.store.save(self.pulses, 0)
                since_boot = 0


def scenario(name, days, online, resets_every_s=0, reconnect=True):
    flash, fs = new_fs()
    levelled = BLOCKS - fs.used_block_count  # every block but the firmware's own files
    board = Board(fs)
    base = list(flash.erases)
    board.run(days * DAY_S, online, resets_every_s=resets_every_s)
    queued = board.box.size
    if not online and reconnect:
        board.run(60, True)  # reconnect: the queue drains, segments are removed
    board.files.close()  # before the file system goes: a handle closed later would crash littlefs-python
    delta = [a - b for a, b in zip(flash.erases, base)]
    per_day = sum(delta) / days
    years = RATED_ERASES / (per_day / levelled) / 365.25
    # Conservative: as if only the blocks free while the queue was fullest took the wear.
    floor_years = RATED_ERASES / (per_day / board.min_free) / 365.25
    return {"name": name, "per_day": per_day, "per_block_day": per_day / levelled, "worst": max(delta),
            "years": years, "floor_years": floor_years, "queued": queued, "dropped": board.box.dropped,
            "free": levelled, "min_free": board.min_free}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=7, help="days per scenario (default 7: a week-long outage)")
    args = ap.parse_args(argv)
    print("littlefs 2, Pico W geometry: %d blocks of %d B, prog 256, read 32, cache 1024, block_cycles 100"
          % (BLOCKS, BLOCK))
    print("defaults: REPORT_INTERVAL_S 10, PERSIST_INTERVAL_S 60; offline every reading spilled as taken, "
          "segments of %d B, at most %d" % (spill.SEG_BYTES, spill.MAX_SEGMENTS))
    print()
    print("%-42s %10s %13s %11s %7s %14s" % ("scenario (%d days)" % args.days, "erases/day", "per block/day",
                                              "worst block", "years", "years, fullest"))
    rows = [
        scenario("online (broker acknowledges)", args.days, True),
        scenario("offline %d days, then reconnect" % args.days, args.days, False),
        scenario("always offline (oldest dropped when full)", args.days + 3, False, reconnect=False),
        scenario("watchdog reset every 20 s", min(args.days, 2), True, resets_every_s=20),
    ]
    for r in rows:
        print("%-42s %10.1f %13.3f %11d %7.0f %14.0f" % (
            r["name"], r["per_day"], r["per_block_day"], r["worst"], r["years"], r["floor_years"]))
    off = rows[1]
    print()
    print("outage: %d readings queued on flash after %d days, %d dropped; littlefs levels wear over the"
          " %d blocks the firmware's files leave (%d free at the fullest)" % (
              off["queued"], args.days, off["dropped"], off["free"], rows[2]["min_free"]))
    print("years: 100k erases / (erases per day / %d blocks); 'fullest': as if only the blocks free while the"
          % off["free"])
    print("queue is fullest took them. The worst block stays near block_cycles (100): the average decides.")


if __name__ == "__main__":
    main()
