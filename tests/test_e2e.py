"""The whole pipeline with real servers: virtual Pico Ws (the firmware's App) -> Mosquitto ->
bridge -> InfluxDB 1.6 / SQLite, with faults in every link.

Each test compares what the firmware took (every reading as it left a report window:
host, timestamp, watts, pulse total) with what the database holds at the end: the same
set of (host, timestamp), one row each, with the taken values.
"""

import json
import math
import re
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from picopower.loads import Profile
from picopower.simulate import Simulation
from picopower.sinks import InfluxSink, SqliteSink
from tests import servers
from tests.conftest import TOPIC

pytestmark = pytest.mark.servers

SERIES = "power_usage"
IMP = 1000


def past_start(virtual_s):
    """A virtual start so the whole run lies in the past (the bridge refuses
    timestamps more than a day ahead; the seed's query looks back from now())."""
    return int(time.time()) - int(virtual_s) - 600


def simulation(broker, meters=2, profile=None, start=None, **kw):
    return Simulation(broker.url, TOPIC, profile=profile or Profile.constant(1500), meters=meters,
                      host="pico", series=SERIES, imp_per_kwh=IMP, interval_s=10, speed=0,
                      start_unix_s=start or past_start(600), **kw)


def influx_stored(influxdb):
    rows = influxdb.points('SELECT "power", "energy", "pulses" FROM "%s" GROUP BY "host"' % SERIES, influxdb.db)
    return [(r["host"], r["time"], r["power"], r["energy"], r["pulses"]) for r in rows]


def sqlite_stored(path):
    db = sqlite3.connect(path)
    try:
        return [(h, int(t), p, e, n) for h, t, p, e, n in db.execute(
            "SELECT host, time, power, energy, pulses FROM points WHERE measurement = ?", (SERIES,))]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def wait_stored(get, n, timeout=30):
    return servers.wait_until(lambda: (lambda rows: rows if len(rows) >= n else None)(get()),
                              timeout=timeout, what="%d readings stored" % n)


def assert_every_reading_once_with_its_values(sim, rows):
    """The database holds every reading the firmware took, once, at its original timestamp."""
    taken = {(r.host, r.ts): r for r in sim.taken()}
    assert len(taken) == len(sim.taken())  # no two readings of one board share a second
    keys = [(h, t) for h, t, _, _, _ in rows]
    assert len(keys) == len(set(keys)), "a (host, timestamp) stored twice"
    assert set(keys) == set(taken), (sorted(set(taken) - set(keys))[:5], sorted(set(keys) - set(taken))[:5])
    for host, ts, power, energy, pulses in rows:
        r = taken[(host, ts)]
        assert abs(power - round(r.watts, 1)) <= 0.051, (host, ts, power, r)
        assert pulses == r.pulses and abs(energy - r.pulses / IMP) < 1e-9, (host, ts, pulses, energy, r)


def test_seed_grafana_query_returns_the_simulated_watts_per_host_and_energy_adds_up_to_the_profile(
        mosquitto, influxdb, start_bridge):
    profile = Profile([(0, 1200), (60, 3000), (150, 400)])
    start = past_start(240)
    bridge = start_bridge(InfluxSink(influxdb.url, influxdb.db))
    sim = simulation(mosquitto, meters=2, profile=profile, start=start)
    try:
        sim.run(240)
        assert sim.drain()
    finally:
        sim.close()
    taken = sim.taken()
    assert len(taken) == 24 + 23  # pico-2 boots 5 s after pico-1
    rows = wait_stored(lambda: influx_stored(influxdb), len(taken))
    assert_every_reading_once_with_its_values(sim, rows)
    assert bridge.counters()["rejected"] == 0

    q = ('SELECT last("power") FROM "%s" WHERE time > now() - 1h GROUP BY time(10s), "host" '
         'ORDER BY time DESC' % SERIES)
    got = [r for r in influxdb.points(q, influxdb.db) if r["last"] is not None]
    for m in sim.meters:
        mine = [(r["time"], r["last"]) for r in got if r["host"] == m.host]
        expect = [((r.ts // 10) * 10, round(r.watts, 1)) for r in sorted(m.taken, key=lambda r: -r.ts)]
        assert [t for t, _ in mine] == [t for t, _ in expect]
        assert all(abs(a - b) <= 0.051 for (_, a), (_, b) in zip(mine, expect))
        # and those are the load's watts: windows inside a steady step read within 3 %
        by_bucket = {(r.ts // 10) * 10: r for r in m.taken}
        steady = [(by_bucket[t], w) for t, w in mine
                  if 20 <= by_bucket[t].local_s <= 60 or 80 <= by_bucket[t].local_s <= 150]
        for r, w in steady:
            truth = profile.mean_power(r.local_s - 10, r.local_s)
            assert abs(w - truth) <= 0.03 * truth, (m.host, r, w, truth)
        assert len(steady) >= 8

    # energy: InfluxDB's own last() and spread() against the profile's exact joules
    q = 'SELECT last("energy"), spread("energy") FROM "%s" WHERE time > now() - 1h GROUP BY "host"' % SERIES
    for r in influxdb.points(q, influxdb.db):
        m = next(m for m in sim.meters if m.host == r["host"])
        first, last = min(m.taken, key=lambda x: x.ts), max(m.taken, key=lambda x: x.ts)
        assert abs(r["last"] - m.true_kwh(last.local_s)) <= 1.0 / IMP
        assert abs(r["spread"] - (m.true_kwh(last.local_s) - m.true_kwh(first.local_s))) <= 1.0 / IMP
        # 1200 W for 60 s + 3000 W for 90 s + 400 W to the last reading: about 0.11 kWh
        assert 0.1 < r["last"] < 0.13


def test_same_run_into_sqlite_stores_every_reading_once_with_its_values(mosquitto, start_bridge, tmp_path):
    path = str(tmp_path / "power.db")
    start_bridge(SqliteSink(path))
    sim = simulation(mosquitto, meters=3, profile=Profile([(0, 700), (100, 2500)]))
    try:
        sim.run(200)
        assert sim.drain()
    finally:
        sim.close()
    rows = wait_stored(lambda: sqlite_stored(path), len(sim.taken()))
    assert len(rows) == 20 + 19 + 19
    assert_every_reading_once_with_its_values(sim, rows)
    last = {h: max((t, e) for hh, t, _, e, _ in rows if hh == h)[1] for h in ("pico-1", "pico-2", "pico-3")}
    for m in sim.meters:
        assert abs(last[m.host] - m.true_kwh(max(m.taken, key=lambda r: r.ts).local_s)) <= 1.0 / IMP


def test_broker_stopped_and_restarted_mid_run_every_reading_lands_once_with_its_timestamp(
        mosquitto, influxdb, start_bridge):
    bridge = start_bridge(InfluxSink(influxdb.url, influxdb.db))
    sim = simulation(mosquitto, meters=3)
    try:
        sim.run(120)
        mosquitto.stop()
        sim.run(300)
        assert sim.online() == 0 and sim.queued() >= 3 * 15  # the boards queue through the outage
        assert "cannot reach %s: connection refused" % mosquitto.url in sim.last_error
        mosquitto.start()
        sim.run(420)
        assert sim.drain()
    finally:
        sim.close()
    servers.wait_until(lambda: bridge.connected, timeout=20, what="bridge reconnected")
    rows = wait_stored(lambda: influx_stored(influxdb), len(sim.taken()))
    assert len(sim.taken()) == 42 + 41 + 41
    assert_every_reading_once_with_its_values(sim, rows)


def test_influxdb_stopped_and_restarted_mid_run_every_reading_lands_once_with_its_timestamp(
        mosquitto, influxdb, start_bridge):
    bridge = start_bridge(InfluxSink(influxdb.url, influxdb.db), retry_s=0.2, max_retry_s=0.5)
    sim = simulation(mosquitto, meters=2)
    try:
        sim.run(100)
        servers.wait_until(lambda: bridge.counters()["written"] == sim.published(), what="first part written")
        influxdb.stop()
        sim.run(250)
        servers.wait_until(lambda: bridge.counters()["received"] == sim.published(), what="outage received")
        # held in the bridge's spool, acknowledged ("received" is counted as a batch
        # is taken, "spooled" once it is fsync'ed: wait for the last batch)
        servers.wait_until(lambda: bridge.counters()["spooled"] >= 2 * 14, what="the outage spooled")
        influxdb.start()
        sim.run(350)
        assert sim.drain()
    finally:
        sim.close()
    rows = wait_stored(lambda: influx_stored(influxdb), len(sim.taken()))
    assert len(sim.taken()) == 35 + 34
    assert_every_reading_once_with_its_values(sim, rows)
    # the last spooled batch is in InfluxDB a moment before the spool lets go of it
    servers.wait_until(lambda: bridge.counters()["spool_depth"] == 0, what="spool drained")


def test_bridge_killed_and_restarted_mid_run_every_reading_lands_once_with_its_timestamp(
        mosquitto, influxdb, bridge_process):
    p = bridge_process("e2e-killed-bridge")
    sim = simulation(mosquitto, meters=2)
    try:
        sim.run(100)
        wait_stored(lambda: influx_stored(influxdb), sim.published())
        p.kill()
        before = sim.published()
        sim.run(250)  # published to the broker, held there for the dead bridge's session
        assert sim.published() - before >= 2 * 14 and sim.queued() == 0
        p.start()
        sim.run(350)
        assert sim.drain()
        rows = wait_stored(lambda: influx_stored(influxdb), len(sim.taken()))
    finally:
        sim.close()
    assert len(sim.taken()) == 35 + 34
    assert_every_reading_once_with_its_values(sim, rows)
    assert "Traceback" not in p.err()


def test_wifi_dropped_for_two_minutes_every_reading_lands_once_with_its_timestamp(
        mosquitto, influxdb, start_bridge):
    start_bridge(InfluxSink(influxdb.url, influxdb.db))
    sim = simulation(mosquitto, meters=2)
    try:
        sim.run(60)
        sim.meters[0].board.wifi_up = False
        sim.run(180)
        assert sim.meters[0].queued >= 11 and sim.meters[1].queued == 0
        sim.meters[0].board.wifi_up = True
        sim.run(300)
        assert sim.drain()
    finally:
        sim.close()
    rows = wait_stored(lambda: influx_stored(influxdb), len(sim.taken()))
    assert len(sim.taken()) == 30 + 29
    assert_every_reading_once_with_its_values(sim, rows)
    logs = "\n".join(sim.meters[0].board.logs)
    assert "wifi: lost" in logs and "link: OFFLINE" in logs


# --- the seed's Telegraf route ---------------------------------------------------------------

SEED_TELEGRAF = {"data_format": "json", "json_name_key": "measurement", "json_time_key": "timestamp",
                 "json_time_format": "unix", "tag_keys": ["host"], "topic_tag": ""}


def telegraf_json_row(payload, conf=SEED_TELEGRAF):
    """A small model of Telegraf's JSON parser (the rules in FACTS.md) and its line-protocol
    output: every JSON number becomes a float field; strings and booleans are dropped unless
    named in tag_keys; json_name_key names the measurement only if its value is a string;
    json_time_format unix takes a number or a numeric string (fractions allowed) and a
    missing or bad timestamp drops the whole message (None); topic_tag "" adds no tag."""
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        return None
    name = obj.get(conf["json_name_key"])
    measurement = name if isinstance(name, str) else "mqtt_consumer"
    raw_ts = obj.get(conf["json_time_key"])
    if isinstance(raw_ts, bool) or not isinstance(raw_ts, (int, float, str)):
        return None
    try:
        ts = float(raw_ts)
    except ValueError:
        return None
    if not math.isfinite(ts):
        return None
    tags, fields = {}, {}
    for k, v in obj.items():
        if k == conf["json_time_key"]:
            continue
        if k in conf["tag_keys"]:
            tags[k] = v if isinstance(v, str) else json.dumps(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            fields[k] = float(v)
    if not fields:
        return None
    keys = ["power"] + sorted(k for k in fields if k != "power") if "power" in fields else sorted(fields)
    tag_text = "".join(",%s=%s" % (k, tags[k]) for k in sorted(tags))
    field_text = ",".join("%s=%s" % (k, repr(fields[k])) for k in keys)
    return "%s%s %s %d" % (measurement, tag_text, field_text, int(ts))


def test_every_published_message_gives_the_seeds_line_protocol_row_through_the_seeds_telegraf_rules(
        mosquitto):
    got = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="telegraf-model", clean_session=True)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(TOPIC, qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, msg: got.append(msg.payload.decode())
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    try:
        assert ready.wait(5)
        # idle (0 W), a kettle, a trickle: power must stay a float with a decimal point throughout
        sim = simulation(mosquitto, meters=2, profile=Profile([(0, 0), (40, 2000), (90, 35)]))
        try:
            sim.run(150)
            assert sim.drain()
        finally:
            sim.close()
        servers.wait_until(lambda: len(got) == sim.published(), what="all messages seen")
    finally:
        c.disconnect()
        c.loop_stop()
    taken = {(r.host, r.ts): r for r in sim.taken()}
    assert len(got) == len(taken) == 15 + 14
    seen_zero = False
    for payload in got:
        assert re.search(r'"power": [0-9]+\.[0-9]\b', payload), payload  # a JSON float, never "123.4"
        obj = json.loads(payload)
        r = taken[(obj["host"], obj["timestamp"])]
        seen_zero |= obj["power"] == 0.0
        row = telegraf_json_row(payload)
        # the seed's row: <SERIESNAME>,host=<HOSTNAME> power=<MEASURED POWER> <UNIX TIMESTAMP>,
        # plus the firmware's extra number fields (floats, as Telegraf makes every JSON number)
        seed = "%s,host=%s power=%s" % (SERIES, r.host, repr(round(r.watts, 1)))
        assert row == "%s,energy=%s,pulses=%s %d" % (seed, repr(r.pulses / IMP), repr(float(r.pulses)), r.ts), \
            (row, payload)
    assert seen_zero


def test_the_telegraf_model_drops_what_telegraf_drops():
    ok = '{"power": 12.5, "timestamp": 1700000000, "measurement": "m", "host": "h"}'
    assert telegraf_json_row(ok) == "m,host=h power=12.5 1700000000"
    assert telegraf_json_row(ok.replace("12.5", '"12.5"')) is None  # the only field dropped: no row
    assert telegraf_json_row(ok.replace("1700000000", '"x"')) is None
    assert telegraf_json_row('{"power": 1.0, "measurement": "m", "host": "h"}') is None
    assert telegraf_json_row(ok.replace('"m"', "5")).startswith("mqtt_consumer,host=h power=12.5")
