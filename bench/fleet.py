"""A fleet of virtual Pico Ws into the bridge: readings taken, stored, loss and lag.

    python3 bench/fleet.py [--meters 1000] [--interval 10] [--duration 120] [--speed 1]

Starts a private Mosquitto 2.0 and InfluxDB 1.6 (loopback, temp dirs), the
bridge in-process (InfluxDB sink, spool on), and `picopower simulate
--meters N`'s engine (picopower.simulate.Simulation: N copies of the
firmware's App on one virtual timeline, one thread) paced at --speed times
real time. Each board publishes a reading every --interval s (boots spread
over the first interval, so the fleet does not publish in lockstep).

Figures, all measured in this run:
- readings taken by the firmware, published (PUBACK received), stored
  (distinct (host, timestamp) points in InfluxDB at the end) and lost
  (taken but not stored), plus stored points whose values differ from the
  reading taken;
- lag: from a board's PUBACK to the bridge's InfluxDB write returning, per
  reading (p50, p99, max);
- how far the simulator fell behind its wall-clock schedule (max), the time
  to connect the fleet, threads and CPU seconds of this process.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests import servers  # noqa: E402
from picopower.bridge import Bridge  # noqa: E402
from picopower.loads import household_day  # noqa: E402
from picopower.simulate import Simulation, progress_line  # noqa: E402
from picopower.sinks import InfluxSink  # noqa: E402

TOPIC = "fleet/power"
SERIES = "fleet"


class TimedInfluxSink(InfluxSink):
    """The bridge's InfluxDB sink, noting when each point's write returned."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.stored_at = {}
        self._lock = threading.Lock()

    def write(self, points):
        super().write(points)
        t = time.monotonic()
        with self._lock:
            for p in points:
                self.stored_at.setdefault((p.host, int(p.time)), t)


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--duration", type=float, default=120.0, help="virtual seconds")
    ap.add_argument("--speed", type=float, default=1.0, help="virtual clock / wall clock (1 = real time)")
    args = ap.parse_args(argv)

    published_at = {}

    def on_data(meter, payload):
        published_at[(meter.host, json.loads(payload)["timestamp"])] = time.monotonic()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with servers.Mosquitto() as broker, servers.InfluxDB() as influx, \
            tempfile.TemporaryDirectory(prefix="picopower-fleet-") as tmp:
        influx.create_database("telegraf")
        sink = TimedInfluxSink(influx.url, "telegraf")
        bridge = Bridge(broker.url, [TOPIC], sink, spool_dir=os.path.join(tmp, "spool"),
                        client_id="fleet-bridge").start()
        threads_before = threading.active_count()
        # a start in the past so the run's virtual timestamps are not ahead of now
        start = time.time() - (args.duration if args.speed > 1 or args.speed == 0 else 0)
        sim = Simulation(broker.url, TOPIC, profile=lambda i: household_day(seed=i + 1), meters=args.meters,
                         host="house", series=SERIES, interval_s=args.interval, speed=args.speed,
                         start_unix_s=start, data_dir=os.path.join(tmp, "boards"), on_data=on_data)
        t0 = time.monotonic()
        # boots are spread over the first interval; each board is online ~3 s after its boot
        # (WIFI -> CLOCK -> BROKER, one loop pass each)
        boot_s = args.interval + 5
        sim.run(boot_s, progress=lambda s: print(progress_line(s), file=sys.stderr, flush=True), every_s=5)
        connect_s = time.monotonic() - t0
        online = sim.online()
        sim.run(args.duration, progress=lambda s: print(progress_line(s) + "  stored %d" % len(sink.stored_at),
                                                       file=sys.stderr, flush=True), every_s=5)
        run_s = time.monotonic() - t0
        threads = threading.active_count() - threads_before
        drained = sim.drain(wall_s=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(sink.stored_at) < sim.published():
            time.sleep(0.1)
        taken = {(r.host, r.ts): r for r in sim.taken()}
        rows = influx.points('SELECT "power", "pulses" FROM "%s" GROUP BY "host"' % SERIES, "telegraf")
        stored = {}
        dup = 0
        for r in rows:
            key = (r["host"], r["time"])
            dup += key in stored
            stored[key] = r
        wrong = sum(1 for k, r in stored.items()
                    if k in taken and (abs(r["power"] - round(taken[k].watts, 1)) > 0.051
                                       or r["pulses"] != taken[k].pulses))
        lags = [sink.stored_at[k] - t for k, t in published_at.items() if k in sink.stored_at]
        counters = bridge.counters()
        behind = sim.behind_s
        sim.close()
        bridge.stop()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lost = len(set(taken) - set(stored))
    print("$ python3 bench/fleet.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("fleet: %d boards, every %d s, %.0f virtual s at speed %g (%.1f wall s)" % (
        args.meters, args.interval, args.duration, args.speed, run_s))
    print("  online after %d virtual s: %d/%d (%.1f wall s)" % (boot_s, online, args.meters, connect_s))
    print("  readings taken     %d" % len(taken))
    print("  published (PUBACK) %d" % sim.published())
    print("  stored in InfluxDB %d distinct (host, timestamp); %d extra, %d duplicate rows, %d with other values" % (
        len(set(stored) & set(taken)), len(set(stored) - set(taken)), dup, wrong))
    print("  lost               %d (%.3f %%)%s" % (lost, 100.0 * lost / max(1, len(taken)),
                                                   "" if drained else "  [boards' queues not drained]"))
    print("  lag publish->store p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d readings)" % (
        pct(lags, 50) * 1000, pct(lags, 99) * 1000, (max(lags) if lags else float("nan")) * 1000, len(lags)))
    print("  bridge: received %d, written %d, rejected %d, spooled %d" % (
        counters["received"], counters["written"], counters["rejected"], counters["spooled"]))
    print("  simulator: max %.0f ms behind schedule, %d extra threads, CPU %.1f s user + %.1f s sys "
          "(this process, bridge included)" % (
              behind * 1000, threads, cpu1.ru_utime - cpu0.ru_utime, cpu1.ru_stime - cpu0.ru_stime))
    return 0 if lost == 0 and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
