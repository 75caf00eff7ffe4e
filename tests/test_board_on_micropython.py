"""The board's logic, run on the real MicroPython interpreter.

The same modules run on CPython in the other tests; here they run where they
will live, so a CPython-only idiom (f-string format specs, dataclasses, a
missing module) fails a test instead of a board.
"""

import json

import pytest

from picopower.loads import Profile
from picopower import firmware
from picopower.firmware import pulses

from tests import mpy

pytestmark = pytest.mark.micropython


def test_pulse_handler_allocates_nothing_in_10000_calls():
    out = mpy.run_json("""
        import gc, json, micropython
        from pulses import PulseCapture
        from array import array
        class Clock:
            # Tick values made up front: adding to a tick near 2**30 would
            # make a big int, an allocation of the test's own.
            def __init__(self, n):
                self.ticks = array('L', [(k * 150001) & 0x3FFFFFFF for k in range(n)])
                self.i = 0
            def tick(self):
                self.i += 1
                return self.ticks[self.i]
        clock = Clock(12000)
        cap = PulseCapture(150000, clock=clock.tick)
        h = cap.handler
        gc.disable()  # no collection may hide an allocation
        before = gc.mem_alloc()
        h(None)
        i = 0
        while i < 10000:
            h(None)
            i += 1
        after = gc.mem_alloc()
        # And with the heap locked, as in a hard IRQ: any allocation raises.
        micropython.heap_lock()
        try:
            i = 0
            while i < 1000:
                h(None)
                i += 1
            locked = 'ok'
        except MemoryError:
            locked = 'allocated'
        micropython.heap_unlock()
        print(json.dumps({'before': before, 'after': after, 'count': cap.count, 'locked': locked}))
    """)[0]
    assert out["count"] == 11001
    assert out["after"] == out["before"]
    assert out["locked"] == "ok"


def test_width_filter_handler_allocates_nothing_with_heap_locked():
    out = mpy.run_json("""
        import json, micropython
        from pulses import PulseCapture
        class Pin:
            def __init__(self):
                self.v = 1
            def value(self):
                return self.v
        class Clock:
            def __init__(self):
                self.t = 0
            def tick(self):
                return self.t
        pin = Pin()
        clock = Clock()
        cap = PulseCapture(150000, 20000, 120000, 0, clock=clock.tick)
        h = cap.handler
        micropython.heap_lock()
        i = 0
        while i < 2000:
            clock.t = (clock.t + 300000) & 0x3FFFFFFF
            pin.v = 0
            h(pin)
            clock.t = (clock.t + 50000) & 0x3FFFFFFF
            pin.v = 1
            h(pin)
            clock.t = (clock.t + 1000) & 0x3FFFFFFF  # a 0.5 ms flicker: too short
            pin.v = 0
            h(pin)
            clock.t = (clock.t + 500) & 0x3FFFFFFF
            pin.v = 1
            h(pin)
            i += 1
        micropython.heap_unlock()
        print(json.dumps({'count': cap.count, 'rejected': cap.rejected}))
    """)[0]
    assert out == {"count": 2000, "rejected": 2000}


def test_real_ticks_handler_keeps_heap_unchanged_over_10000_calls():
    out = mpy.run_json("""
        import gc, json
        from pulses import PulseCapture
        cap = PulseCapture(0)
        h = cap.handler
        gc.disable()
        before = gc.mem_alloc()
        i = 0
        while i < 10000:
            h(None)
            i += 1
        after = gc.mem_alloc()
        print(json.dumps({'before': before, 'after': after, 'count': cap.count}))
    """)[0]
    assert out["count"] == 10000
    assert out["after"] == out["before"]


ESTIMATE = """
import json
from power import PowerEstimator
est = PowerEstimator(1000, 300)
est.start(0)
out = []
i = 0
for k in range(1, 301):
    t1 = k * 10000000
    while i < len(times) and times[i] <= t1:
        est.pulse(times[i])
        i += 1
    out.append(est.close(t1))
print(json.dumps(out))
"""


def test_estimator_gives_the_same_watts_on_micropython_as_on_cpython(capsys):
    profile = Profile([(0, 35), (600, 2200), (780, 35), (1500, 120), (2400, 35)])
    times = [int(t * 1e6) for t in profile.pulse_times(1000, 3000)]
    firmware.run(ESTIMATE, {"times": times})
    expected = json.loads(capsys.readouterr().out)
    got = mpy.run_json("times = %s\n" % json.dumps(times) + ESTIMATE)[0]
    assert len(got) == len(expected) == 300
    assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-6
    assert max(got) > 2000


def test_min_gap_for_1000_imp_and_24_kw_is_150_ms_on_both_interpreters():
    got = mpy.run_json("""
        import json
        from pulses import min_gap_us
        print(json.dumps([min_gap_us(1000, 24000), min_gap_us(10000, 24000), min_gap_us(800, 11000)]))
    """)[0]
    assert got == [pulses.min_gap_us(1000, 24000), pulses.min_gap_us(10000, 24000), pulses.min_gap_us(800, 11000)]
    assert got[0] == 150000


def test_message_config_energy_and_outbox_behave_the_same_on_micropython():
    got = mpy.run_json("""
        import json
        import message, config, energy
        from outbox import Outbox
        print(message.reading(1234.5678, 1800000000, 'power', 'pico', 12345678, 1000))
        s, errors, warnings = config.check({'WIFI_SSID': 'x', 'MQTT_SERVER': 'mqtt.local',
                                             'MQTT_TOPIC': 'home/power', 'MQTT_PORT': '18a3'})
        print(json.dumps(errors))
        print(json.dumps([energy.decode(energy.encode(123456789, 800), 800),
                          energy.decode(energy.encode(1000, 1000), 800),
                          energy.decode('123 1000 5', 1000)]))
        box = Outbox(4)
        for k in range(6):
            box.push(0, 5000000000 + k, 100.5 + k, 4294967290 + k)
        print(json.dumps([box.size, box.dropped, list(box.peek(5000000010, [4294967300]))]))
    """)
    assert got[0] == {"power": 1234.6, "timestamp": 1800000000, "measurement": "power", "host": "pico",
                      "energy": 12345.678, "pulses": 12345678}
    assert got[1] == ["MQTT_PORT must be an integer 1-65535, got '18a3'"]
    assert got[2] == [123456789, 800, None]
    assert got[3] == [4, 2, [0, 5000000002, 102.5, 4294967292, 0]]  # kind 0: a live reading
