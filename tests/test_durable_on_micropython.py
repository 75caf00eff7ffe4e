"""The durable queue, the energy keeper and the floor, run on the real MicroPython (wasm).

The same code runs on CPython in test_durability.py; here it runs where it will
live: struct and bytearray behaviour, 48-bit times and pulse totals past 2^32
(big ints on the Pico), a queue built without temporaries, the frames written
to flash byte for byte as CPython writes them, and the pulse IRQ's scratch
write allocating nothing with the heap locked.
"""

import json

import pytest

from picopower.firmware import health, spill

from tests import mpy

pytestmark = pytest.mark.micropython

FRAME = [(0, 0, 1800000010, 1234.5, 4294967290), (0, 0, 1800000020, 1300.0, 4294967301),
         (1, 0, 1800000020, 20.0, 7), (0, 1, 1800000005, 999.9, 4294967280)]


def _cpython_frame():
    buf = bytearray(200)
    n = spill.encode_frame(buf, 0, 1800000010, {0: 4294967290, 1: 7}, FRAME)
    return bytes(buf[:n]).hex()


def test_building_a_2880_reading_queue_allocates_only_its_46080_byte_buffer():
    got = mpy.run_json("""
        import gc, json
        from outbox import Outbox
        gc.collect()
        gc.disable()  # garbage stays counted: a temporary list would show
        before = gc.mem_alloc()
        box = Outbox(2880)
        after = gc.mem_alloc()
        gc.enable()
        print(json.dumps([after - before, box.capacity]))
    """)[0]
    assert got[1] == 2880
    assert 2880 * 16 <= got[0] < 2880 * 16 + 256  # [0] * n per field took ~79 KB more


def test_outbox_keeps_kind_48_bit_times_and_totals_past_2_32_on_micropython():
    got = mpy.run_json("""
        import json
        from outbox import Outbox
        box = Outbox(4)
        t0 = 62 * 86400 * 1000  # 62 days of ms: past 2^32
        box.push(1, t0, 10.5, 4294967295 + 5, 1)
        box.push(0, t0 + 3600000, 11.5, 6)
        a = box.peek(t0 + 7200000, [10, 4294967305])
        box.pop()
        b = box.peek(t0 + 7200000, [10, 4294967305])
        print(json.dumps([list(a), list(b)]))
    """)[0]
    assert got == [[1, 62 * 86400 * 1000, 10.5, 4294967300, 1], [0, 62 * 86400 * 1000 + 3600000, 11.5, 6, 0]]


def test_spill_frames_are_byte_for_byte_the_same_on_micropython_and_decode_back():
    got = mpy.run_json("""
        import json, binascii, spill
        recs = %s
        buf = bytearray(200)
        n = spill.encode_frame(buf, 0, 1800000010, {0: 4294967290, 1: 7}, recs)
        f = spill.read_frame(buf, 0, n)
        out = [spill.read_record(buf, f[1] + i * spill.REC, f[3], f[4]) for i in range(f[0])]
        buf[n - 1] ^= 1  # one flipped bit: the frame is refused
        print(json.dumps([binascii.hexlify(buf[:n]).decode(), n, [list(r) for r in out],
                          spill.read_frame(buf, 0, n) is None]))
    """ % json.dumps(FRAME))[0]
    hexed, n, recs, refused = got
    assert (n, hexed[:-2]) == (len(_cpython_frame()) // 2, _cpython_frame()[:-2])
    assert recs == [[ch, kind, ts, watts, pulses & 0xFFFFFFFF] for ch, kind, ts, watts, pulses in FRAME]
    assert refused


# The flash as a dict and a board around it, for both guest programs below.
RAM_FILES = mpy.guest_source("guest_ramfiles.py")

DURABLE = """
import gc, json
# The wasm port's collector can free objects held only in locals (a memory
# fault in the guest, not seen on the rp2 port): no collection in this run.
gc.disable()
from outbox import Outbox
from spill import Durable
""" + RAM_FILES + """
class Wall:
    synced = True
    def unix_ms(self, m):
        return 1800000000000 + m
    def mono_ms(self, u):
        return u - 1800000000000

fs = RamFiles()
box = Durable(Outbox(64), fs, "q", Wall(), lambda s: None)
box.load()
n = 0
for k in range(600):
    box.push(k % 2, (k + 1) * 10000, 100.0 + k / 10, 4294967000 + k)
    # Online but behind for the first 300, then offline: batched full frames, then short ones.
    if box.tick((k + 1) * 10000, k < 300):
        n += 1
box.flush()
# A new boot on the same flash: everything comes back, oldest first.
box2 = Durable(Outbox(64), fs, "q", Wall(), lambda s: None)
found = box2.load()
out = []
while box2.size:
    # Tuples kept as they come: building a list from unpacked locals here
    # trips the wasm port's garbage collector (a memory fault in the guest).
    out.append(box2.peek(0, [4294967600, 4294967600]))
    box2.pop()
print(json.dumps([n, found, len(fs.d), list(out[0]), list(out[-1]), len(out)]))
"""


def test_a_durable_queue_written_on_micropython_reads_back_all_600_readings_in_order():
    flushes, found, left, first, last, count = mpy.run_json(DURABLE)[0]
    assert flushes >= 100 and found == 600 and count == 600
    assert first == [0, 10000, 100.0, 4294967000, 0]
    assert last == [1, 6000000, 159.9, 4294967599, 0]
    assert left == 0  # every published segment removed


def test_the_pulse_irq_keeps_the_energy_word_without_allocating():
    got = mpy.run_json("""
        import json, micropython
        from array import array
        from pulses import PulseCapture
        from scratch import Keeper
        regs = array('L', [0, 0, 0, 0])
        def write(i, v):
            regs[i] = v
        class Clock:
            def __init__(self):
                self.t = 0
            def tick(self):
                return self.t
        clock = Clock()
        cap = PulseCapture(1000, clock=clock.tick)
        keeper = Keeper(write, 2, cap)
        keeper.sync(123456789, 123456789)  # flash holds 123456789, nothing since
        h = keeper.handler
        micropython.heap_lock()
        i = 0
        while i < 3000:
            clock.t = (clock.t + 200000) & 0x3FFFFFFF
            h(None)
            i += 1
        micropython.heap_unlock()
        w = regs[2]
        print(json.dumps([w >> 16, w & 0xFFFF, cap.count]))
    """)[0]
    assert got == [123456789 & 0x3FFF, 3000, 3000]


def test_energy_floor_text_round_trips_and_converts_a_changed_meter_constant():
    floor = {0: [1800000000, 123456789], 2: [1800000010, 5]}
    text = health.encode_floor(floor, [1000, 800, 2000])
    assert health.decode_floor(text, [1000, 800, 2000]) == {0: (1800000000, 123456789), 2: (1800000010, 5)}
    assert health.decode_floor(text, [2000, 800, 2000])[0] == (1800000000, 246913578)
    got = mpy.run_json("""
        import json, health
        print(json.dumps(health.decode_floor(%r, [1000, 800, 2000])))
    """ % text)[0]
    assert got == {"0": [1800000000, 123456789], "2": [1800000010, 5]}


APP = """
import gc, json
gc.disable()  # see DURABLE: the wasm port's collector
import config
from app import App
""" + RAM_FILES + """
class Client:
    def __init__(self, board):
        self.b = board
    def connect(self):
        pass
    def publish(self, topic, payload, retain=False, qos=1):
        if retain:
            self.b.retained[topic] = payload
        if topic == "home/power":
            self.b.readings.append(json.loads(payload))
        if topic == "home/power/status":
            self.b.status = json.loads(payload)
    def ping(self):
        pass
    def close(self):
        pass

class Board(GuestBoard):
    def __init__(self):
        super().__init__()
        self.up = True
        self.readings = []
        self.retained = {}
        self.status = None
    def restart(self):
        self.handlers = []
    def wifi_status(self):
        return 3 if self.up else 1
    def resolve(self, host):
        if not self.up:
            raise OSError(113)
        return host
    def ntp_unix_ms(self, host):
        if not self.up:
            raise OSError(110)
        return GuestBoard.ntp_unix_ms(self, host)
    def mqtt_client(self, settings, cid, will):
        if not self.up:
            raise OSError(113)
        return Client(self)
    def mqtt_retained(self, client, topic):
        p = self.retained.get(topic)
        return p.encode() if p is not None else None

s, errors, _ = config.check({"WIFI_SSID": "x", "MQTT_SERVER": "127.0.0.1", "MQTT_TOPIC": "home/power",
                              "HOSTNAME": "pico", "WATCHDOG_MS": 0})
board = Board()
pulses = [0]

def run(app, until_s):
    while board.us < until_s * 1000000:
        app.step()
        board.us += 500000
        if board.us % 1000000 == 0:  # 3.6 kW at 1000 imp/kWh: a pulse a second
            pulses[0] += 1
            for h in board.handlers:
                h(None)

app = App(board, s)
app.boot()
run(app, 120)
board.up = False
run(app, 600)
queued = app.outbox.on_flash
board.cause = 1
board.restart()
taken = app.readings
app = App(board, s)  # a watchdog reset: RAM gone, flash and scratch kept
app.boot()
run(app, 700)
board.up = True
run(app, 800)
taken += app.readings
stamps = [m["timestamp"] for m in board.readings]
print(json.dumps([queued, taken, len(stamps), stamps == sorted(stamps), len(set(stamps)),
                  app.channels[0].total(), pulses[0], board.readings[-1]["pulses"], sorted(board.status),
                  board.status["reset_cause"], board.status["resets"]]))
"""


def test_the_whole_app_on_micropython_keeps_every_reading_and_pulse_through_a_watchdog_reset_offline():
    queued, taken, published, ordered, unique, total, pulses, last, keys, cause, resets = mpy.run_json(
        APP, fuel=20 * 10**9)[0]
    assert queued >= 45  # offline readings went to flash as they were taken
    assert published == taken == unique >= 75 and ordered
    assert total == pulses == 800 and last >= 790
    assert keys == sorted(["host", "uptime_s", "reset_cause", "resets", "heap_free", "rssi", "queued", "dropped",
                           "spilled", "unstamped", "rejected", "energy_damaged"])
    assert (cause, resets) == (1, 1)
