"""The firmware against misbehaving MQTT brokers: readings taken and delivered, longest watchdog gap.

    python3 bench/network_faults.py

Each scenario runs the firmware's App on a virtual Pico W whose MQTT client is
the real board/lib/board.py over the umqtt.simple 1.8 stand-in
(tests/umqtt_simple_1_8.py) on MicroPython-like sockets with a virtual clock
(tests/fakenet.py): a steady 2 kW at 1000 imp/kWh, a reading every 10 s, the
8 s watchdog instrumented (every feed timed). After the fault the broker
behaves again and the board runs until its queue is empty. The same
scenarios are asserted in tests/test_network_faults.py; this prints the figures.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests import test_network_faults as faults  # noqa: E402
from tests.fakenet import Broker  # noqa: E402


class _Patch:
    """What load_board wants of pytest's monkeypatch: set and forget."""

    def setitem(self, d, k, v):
        d[k] = v

    def setattr(self, obj, name, value, raising=True):
        setattr(obj, name, value)


def scenario(before_s, fault, fault_s, discovery=False):
    rig = faults.Rig(_Patch(), tempfile.mkdtemp(prefix="picopower-bench-"), Broker(), discovery=discovery)
    rig.run(before_s)
    fault(rig.broker)
    rig.run(fault_s)
    during, queued = rig.readings_received(), rig.app.outbox.size
    rig.broker.heal()
    rig.run_until_drained()
    return rig.app.readings, rig.readings_received(), during, queued, rig.board.longest_gap_ms


def _set(**kw):
    def apply(broker):
        for k, v in kw.items():
            setattr(broker, k, v)
    return apply


SCENARIOS = (
    ("silent after accepting TCP, 5 min from boot", 0, _set(silent=True), 300, False),
    ("host drops SYNs (PC off), 5 min from boot", 0, _set(drops_syn=True), 300, False),
    ("PC switched off for 5 min while online", 120, lambda b: b.switch_off(), 300, False),
    ("every answer after 2.2 s, HA discovery on, 10 min", 0, _set(connack_ms=2200, puback_ms=2200), 600, True),
    ("every answer after 4.2 s, 10 min", 0, _set(connack_ms=4200, puback_ms=4200), 600, False),
    ("half a PUBACK, then nothing, 2 min", 120, _set(stall_after=0), 120, False),
    ("closes after each publish, 10 min", 120, _set(close_after_publish=True), 600, False),
    ("closes after each publish from boot, 10 min", 0, _set(close_after_publish=True), 600, False),
    ("CONNACK trickled a byte every 2 s, 5 min", 0, _set(trickle_ms=2000), 300, False),
)


def main():
    print("%-52s %6s %9s %12s %7s %12s" % ("broker", "taken", "delivered", "during fault", "queued", "longest gap"))
    for name, before, fault, secs, discovery in SCENARIOS:
        taken, got, during, queued, gap = scenario(before, fault, secs, discovery)
        print("%-52s %6d %9d %12d %7d %9d ms" % (name, taken, got, during, queued, gap))
    print("watchdog: 8000 ms; every network step ends within board.STEP_MS = 5000 ms")


if __name__ == "__main__":
    main()
