"""`picopower demo`: the whole chain on one laptop, nothing to install or plug in.

    EmbeddedBroker  amqtt (a real MQTT broker library) in a thread of this
                    process, on a free 127.0.0.1 port
    Simulation      N virtual Pico Ws running the firmware's own code
                    (picopower.simulate), each with its own household day
                    (picopower.loads.household_day), on an accelerated clock
    Bridge          MQTT -> SQLite (picopower.bridge), what Telegraf does in the seed:
                    readings and revisions into `points` (the stored, revised
                    history), and the readings alone into `live` (what was
                    published live), so the graph can show what revisions change
    Monitor         a subscriber that feeds the live dashboard (picopower.monitor)

`Demo.run()` drives the simulation in short slices and calls `on_tick`
between them; `Demo.finish()` lets every queued reading reach the database,
stops everything and draws the PNG from the SQLite file.

The virtual clock starts at yesterday's local midnight, so a kettle at 07:12
is at 07:12 on the graph, and a whole virtual day ends by today's midnight:
no timestamp is ahead of this PC's clock by more than the bridge accepts.
"""

import asyncio
import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta

from picopower.errors import Invalid, Unavailable
from picopower.loads import Profile, household_day

TOPIC = "picopower/demo/power"
SERIES = "power"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    """An amqtt broker on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self._loop = None
        self._broker = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None

    @property
    def url(self):
        return "mqtt://127.0.0.1:%d" % self.port

    def start(self, timeout=10.0):
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._thread = threading.Thread(target=self._main, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise Unavailable("the embedded MQTT broker did not start in %.0f s" % timeout)
        if self._error:
            raise Unavailable("the embedded MQTT broker did not start on 127.0.0.1:%d: %s" % (self.port, self._error))
        return self

    def _main(self):
        from amqtt.broker import Broker
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d" % self.port}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def boot():
            self._broker = Broker(config)
            await self._broker.start()

        try:
            loop.run_until_complete(boot())
        except Exception as e:  # noqa: BLE001  (reported as one line by start())
            self._error = str(e) or type(e).__name__
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self, timeout=5.0):
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(timeout)
        except Exception:  # noqa: BLE001  (shutting down; nothing to report)
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)


def demo_start_unix_s(now=None):
    """Yesterday's local midnight: a whole virtual day ends no later than today's."""
    now = datetime.fromtimestamp(time.time() if now is None else now)
    midnight = datetime.combine(now.date() - timedelta(days=1), datetime.min.time())
    return midnight.timestamp()


def household_days(index, days=3):
    """Consecutive household days for board `index`, a different one per board and day."""
    steps = []
    for d in range(days):
        p = household_day(start=d * 86400.0, seed=1 + index * 101 + d)
        steps += [(t, w) for t, w in zip(p.times, p.watts) if not steps or t > steps[-1][0]]
    # A second house runs warmer: a heat pump's base load.
    if index % 3 == 2:
        steps = [(t, w + 450.0) for t, w in steps]
    return Profile(steps)


class Demo:
    """Broker + virtual boards + bridge + monitor, in this process."""

    def __init__(self, meters=3, speed=720.0, db="demo.sqlite", interval_s=10, start_unix_s=None,
                 imp_per_kwh=1000):
        if not 1 <= meters <= 20:
            raise Invalid("--meters must be 1-20, got %d" % meters)
        if not 0 < speed <= 100000:
            raise Invalid("--speed must be above 0 and at most 100000, got %s" % speed)
        d = os.path.dirname(os.path.abspath(db))
        if not os.path.isdir(d):
            raise Unavailable("cannot write %s: no such directory %s" % (db, d))
        self.n = meters
        self.speed = speed
        self.db = db
        self.interval_s = interval_s
        self.imp = imp_per_kwh
        self.start_unix_s = demo_start_unix_s() if start_unix_s is None else start_unix_s
        self.broker = None
        self.bridge = None
        self.live_bridge = None
        self.monitor = None
        self.sim = None
        self.started_wall = None

    def start(self):
        from picopower.bridge import Bridge
        from picopower.monitor import Monitor
        from picopower.simulate import Simulation
        from picopower.sinks import SqliteSink
        from picopower.urls import parse_broker
        self.broker = EmbeddedBroker().start()
        try:
            # The boards' revisions (TOPIC/revised) overwrite their live readings in the file.
            self.bridge = Bridge(self.broker.url, [TOPIC, TOPIC + "/revised"], SqliteSink(self.db),
                                 client_id="picopower-demo-bridge")
            self.bridge.start()
            # Only for the graph: what stored history would be without revisions.
            from picopower.plot import LIVE_TABLE
            self.live_bridge = Bridge(self.broker.url, [TOPIC], SqliteSink(self.db, table=LIVE_TABLE),
                                      client_id="picopower-demo-live")
            self.live_bridge.start()
            self.monitor = Monitor(parse_broker(self.broker.url), [TOPIC], client_id="picopower-demo-view").start()
            self.sim = Simulation(self.broker.url, TOPIC, profile=lambda i: household_days(i), meters=self.n,
                                  host="house", series=SERIES, imp_per_kwh=self.imp, interval_s=self.interval_s,
                                  speed=self.speed, start_unix_s=self.start_unix_s)
        except BaseException:
            self.close()
            raise
        self.started_wall = time.monotonic()
        return self

    @property
    def virtual_s(self):
        return self.sim.now_s if self.sim else 0.0

    def run(self, duration_s=None, virtual_s=None, on_tick=None, tick_s=0.25):
        """Run until `duration_s` wall seconds or `virtual_s` virtual seconds (None: on)."""
        end = None if duration_s is None else time.monotonic() + duration_s
        while True:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return
            slice_s = tick_s if left is None else min(tick_s, left)
            until = None if virtual_s is None else virtual_s
            done = self.sim.run(until_s=until, wall_s=slice_s)
            if on_tick is not None:
                on_tick(self)
            if done and virtual_s is not None:
                return

    def counters(self):
        c = self.bridge.counters() if self.bridge else {}
        return {"virtual_s": self.virtual_s, "readings": self.sim.readings() if self.sim else 0,
                "published": self.sim.published() if self.sim else 0,
                "queued": self.sim.queued() if self.sim else 0,
                "seen": self.monitor.meters.messages if self.monitor else 0,
                "written": c.get("written", 0), "rejected": c.get("rejected", 0)}

    def finish(self, wait_s=20.0):
        """Drain the boards' queues, wait for the bridge to store what was published, stop."""
        if self.sim is not None:
            self.sim.drain(wall_s=wait_s)
            published = self.sim.published()
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                c, lc = self.bridge.counters(), self.live_bridge.counters()
                if min(c.get("written", 0) + c.get("rejected", 0),
                       lc.get("written", 0) + lc.get("rejected", 0)) >= published:
                    break
                time.sleep(0.05)
        self.close()

    def close(self):
        if self.sim is not None:
            self.sim.close()
        if self.monitor is not None:
            self.monitor.stop()
        for bridge in (self.bridge, self.live_bridge):
            if bridge is not None:
                try:
                    bridge.stop()
                except Exception:  # noqa: BLE001
                    pass
        if self.broker is not None:
            self.broker.stop()
