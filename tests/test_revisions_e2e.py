"""Revisions end to end: a virtual Pico W (the firmware's App) -> a real Mosquitto ->
the bridge -> a real InfluxDB 1.6, with Home Assistant discovery on."""

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from picopower.configs import with_revisions
from picopower.loads import household_day
from picopower.simulate import Simulation
from picopower.sinks import InfluxSink
from tests import servers
from tests.conftest import TOPIC

pytestmark = pytest.mark.servers

SERIES = "power"
HOURS = 4


def test_after_4_hours_of_a_household_the_seed_query_returns_the_revised_value_once_per_window(
        mosquitto, influxdb, start_bridge):
    seen = []
    lock = threading.Lock()
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy")
    spy.on_connect = lambda c, u, f, r, p: c.subscribe("#", 1)

    def on_message(c, u, msg):
        with lock:
            seen.append((msg.topic, msg.payload.decode("utf-8", "replace")))
    spy.on_message = on_message
    spy.connect("127.0.0.1", mosquitto.port)
    spy.loop_start()
    bridge = start_bridge(InfluxSink(influxdb.url, influxdb.db), topics=with_revisions([TOPIC]))
    start = int(time.time()) - HOURS * 3600 - 600
    sim = Simulation(mosquitto.url, TOPIC, profile=household_day(seed=4, hours=HOURS), meters=1, host="kitchen",
                     series=SERIES, imp_per_kwh=1000, interval_s=10, speed=0, start_unix_s=start,
                     extra={"HA_DISCOVERY": True})
    live = {}
    stored = {}
    revised = {}
    meter = sim.meters[0]

    def took(channel, mono_ms, watts, pulses, kind):
        ts = (meter.board.start_unix_ms + mono_ms) // 1000
        if kind == 0:
            live[ts] = round(watts, 1)
        else:
            revised[ts] = round(watts, 1)
        stored[ts] = round(watts, 1)
    meter.app.on_reading.append(took)
    try:
        sim.run(HOURS * 3600)
        assert sim.drain()
    finally:
        sim.close()
    assert len(revised) >= 30  # the household's switch-offs and standby
    assert sum(1 for t in revised if abs(revised[t] - live[t]) > 5) >= 10

    q = 'SELECT "power" FROM "%s" WHERE "host" = \'kitchen\'' % SERIES
    rows = servers.wait_until(lambda: (lambda r: r if len(r) >= len(live) and all(
        abs(x["power"] - stored[x["time"]]) <= 0.051 for x in r if x["time"] in stored) else None)(
        influxdb.points(q, influxdb.db)), timeout=60, what="revised readings stored")
    times = [r["time"] for r in rows]
    assert len(times) == len(set(times)) == len(live)  # one point per window, no duplicates
    assert set(times) == set(live)
    for r in rows:
        assert abs(r["power"] - stored[r["time"]]) <= 0.051, (r, live[r["time"]], stored[r["time"]])

    # The seed's Grafana query (10 s buckets) returns the stored, revised values.
    seed = ('SELECT last("power") FROM "%s" WHERE time > now() - %dh GROUP BY time(10s), "host" '
            'ORDER BY time DESC' % (SERIES, HOURS + 1))
    got = {r["time"]: r["last"] for r in influxdb.points(seed, influxdb.db) if r["last"] is not None}
    for ts, watts in revised.items():
        assert abs(got[(ts // 10) * 10] - watts) <= 0.051

    # Home Assistant: its state topics never carry a revision.
    spy.loop_stop()
    spy.disconnect()
    configs = [json.loads(p) for t, p in seen if t.startswith("homeassistant/") and t.endswith("/config") and p]
    ha_topics = {c["state_topic"] for c in configs if "state_topic" in c}
    assert TOPIC + "/revised" not in ha_topics and ha_topics
    on_ha = [(t, p) for t, p in seen if t in ha_topics]
    assert on_ha
    revision_texts = {p for t, p in seen if t == TOPIC + "/revised"}
    assert len(revision_texts) == len(revised)
    assert not any(p in revision_texts for _, p in on_ha)
    for t, p in on_ha:
        m = json.loads(p)
        if "timestamp" in m and "power" in m:
            assert m["power"] == live[m["timestamp"]]
