"""Shared fixtures: private Mosquitto and InfluxDB servers on free loopback ports,
the bridge (in-process or as a `picopower bridge` child process), and a virtual
board whose published readings are recorded.

The servers start in ~25 ms (measured: Mosquitto 2.0.11 ~0.02 s, influxd 1.6.7
~0.02 s to answer /ping), so the fixtures are function-scoped: every test gets
fresh, empty servers and can stop/restart/kill them freely. Mark tests that use
them with @pytest.mark.servers.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from picopower.bridge import Bridge
from picopower.virtual import PulseSource, RecordingClient, VirtualBoard, make_app, run_until, settings_for
from tests import servers

TOPIC = "home/power"
START = 1800000000.0


def _need(path):
    if not os.path.exists(path):
        pytest.skip("%s is not installed (scripts/setup installs it)" % path)


@pytest.fixture
def mosquitto():
    """A running private Mosquitto: .url, .port, .stop(), .restart(), .kill()."""
    _need(servers.MOSQUITTO)
    with servers.Mosquitto() as broker:
        yield broker


@pytest.fixture
def influxdb():
    """A running private influxd with an empty database "telegraf" (the seed's name):
    .url, .db, .query(q, db=), .points(q, db), .stop(), .restart()."""
    _need(servers.INFLUXD)
    with servers.InfluxDB() as influx:
        influx.db = "telegraf"
        influx.create_database(influx.db)
        yield influx


@pytest.fixture
def influx_query(influxdb):
    """influx_query(q) -> rows (dicts of column -> value with tags merged) from the fixture's db."""
    def run(q, db=None):
        return servers.rows(servers.influx_query(influxdb.url, q, db=db or influxdb.db))
    return run


@pytest.fixture
def start_bridge(mosquitto, tmp_path):
    """start_bridge(sink, topics=[TOPIC], broker=None, **Bridge options) -> a started in-process
    Bridge on the `mosquitto` fixture (or `broker`, a URL), spooling to tmp_path/spool; every
    bridge is stopped after the test."""
    started = []

    def start(sink, topics=(TOPIC,), broker=None, **kw):
        kw.setdefault("spool_dir", str(tmp_path / "spool"))
        kw.setdefault("client_id", "test-bridge")
        b = Bridge(broker or mosquitto.url, list(topics), sink, **kw).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


class BridgeProcess:
    """`picopower bridge` as a user runs it, a child process: stdout (the counters) and
    stderr (the log) go to files beside its spool."""

    def __init__(self, argv, client_id, directory):
        self.client_id = client_id
        self.argv = [sys.executable, "-m", "picopower", "bridge", "--client-id", client_id,
                     "--spool-dir", os.path.join(directory, "spool-" + client_id)] + list(argv)
        self.out_path = os.path.join(directory, client_id + ".out")
        self.err_path = os.path.join(directory, client_id + ".err")
        self.proc = None

    def start(self, timeout=15):
        """Starts it and waits until it is subscribed (its `client id` log line)."""
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        mark = "client id %s" % self.client_id
        seen = self.err().count(mark)
        servers.wait_until(lambda: self.err().count(mark) > seen or self.proc.poll() is not None,
                           timeout=timeout, what="bridge %s started" % self.client_id)
        assert self.proc.poll() is None, self.err()[-800:]
        return self

    def err(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def out(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL: no goodbye, nothing acknowledged that was not stored."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout=15):
        """SIGTERM, as a service manager stops it; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def bridge_process(mosquitto, influxdb, tmp_path):
    """bridge_process(client_id, *extra_flags) -> a started BridgeProcess from the `mosquitto`
    fixture's TOPIC into the `influxdb` fixture's database; all are stopped after the test."""
    made = []

    def start(client_id, *extra):
        argv = ["--broker", mosquitto.url, "--topic", TOPIC, "--influx", influxdb.url, "--db", influxdb.db]
        p = BridgeProcess(argv + list(extra), client_id, str(tmp_path))
        made.append(p)
        return p.start()

    yield start
    for p in made:
        if p.proc is not None:
            p.stop()


class RecordedBoard:
    """A virtual board running the firmware on pulse times (seconds, one list per channel),
    with a broker that records what it publishes on the data topic (`messages`, decoded)."""

    def __init__(self, tmp_path, values, pulse_times_s, widths_us=None, start=START):
        self.settings = settings_for(dict({"MQTT_TOPIC": TOPIC, "HOSTNAME": "pico-meter"}, **values))
        self.times_us = [[int(round(t * 1e6)) for t in times] for times in pulse_times_s]
        widths_us = widths_us or [30000] * len(self.times_us)
        self.messages = []
        self.board = VirtualBoard([PulseSource(t, width_us=w) for t, w in zip(self.times_us, widths_us)],
                                  lambda cid, will: RecordingClient(self._sink), str(tmp_path), start)
        self.app = make_app(self.board, self.settings)

    def _sink(self, topic, payload, retain):
        if topic == self.settings["mqtt_topic"]:
            self.messages.append(json.loads(payload))

    def until(self, seconds):
        run_until(self.app, self.board, seconds * 1e6)

    def by_series(self):
        out = {}
        for m in self.messages:
            out.setdefault(m["measurement"], []).append(m)
        return out
