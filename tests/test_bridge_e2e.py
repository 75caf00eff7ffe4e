"""The bridge against real servers: Mosquitto -> bridge -> InfluxDB 1.6 / SQLite, with faults."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from picopower.bridge import BridgeError
from picopower.firmware import message
from picopower.sinks import InfluxSink, SqliteSink
from tests import servers
from tests.conftest import TOPIC

pytestmark = pytest.mark.servers


def readings(n, start=None, host="pico-hall", series="power_usage", step=1, first_pulse=1000):
    start = start or int(time.time()) - 3600
    return [(start + k * step, 100.0 + k * 0.5, first_pulse + k) for k in range(n)]


def payloads(rows, host="pico-hall", series="power_usage"):
    return [message.reading(w, t, series, host, pulses, 1000) for t, w, pulses in rows]


def influx_rows(influxdb, series="power_usage"):
    return influxdb.points('SELECT * FROM "%s"' % series, influxdb.db)


def test_seed_message_through_mosquitto_lands_in_influxdb_and_the_seed_grafana_query_returns_it(
        mosquitto, influxdb, start_bridge):
    b = start_bridge(InfluxSink(influxdb.url, influxdb.db))
    now = int(time.time())
    rows = [(now - 25, 812.5, 5000), (now - 15, 1500.0, 5004), (now - 5, 230.0, 5010)]
    servers.publish(mosquitto.url, TOPIC, payloads(rows, host="pico-hall", series="power_usage"))
    servers.publish(mosquitto.url, TOPIC, payloads([(now - 5, 42.0, 1)], host="pico-shed", series="power_usage"))
    servers.wait_until(lambda: b.counters()["written"] == 4, what="4 points written")
    q = ('SELECT last("power") FROM "power_usage" WHERE time > now() - 1m '
         'GROUP BY time(10s), "host" ORDER BY time DESC')
    got = [r for r in influxdb.points(q, influxdb.db) if r["last"] is not None]
    hall = [(r["time"], r["last"]) for r in got if r["host"] == "pico-hall"]
    shed = [(r["time"], r["last"]) for r in got if r["host"] == "pico-shed"]
    assert hall == [((t // 10) * 10, w) for t, w, _ in sorted(rows, reverse=True)]
    assert shed == [(((now - 5) // 10) * 10, 42.0)]
    stored = influxdb.points('SELECT "power", "energy", "pulses", "host" FROM "power_usage" '
                             'WHERE "host" = \'pico-hall\'', influxdb.db)
    assert [(r["time"], r["power"], r["energy"], r["pulses"]) for r in stored] == [
        (t, w, p / 1000, p) for t, w, p in rows]
    fields = influxdb.points('SHOW FIELD KEYS FROM "power_usage"', influxdb.db)
    assert {r["fieldKey"]: r["fieldType"] for r in fields} == {"power": "float", "energy": "float",
                                                              "pulses": "float"}
    assert b.counters()["rejected"] == 0


def test_same_run_into_sqlite_stores_each_reading_once_even_when_redelivered(mosquitto, start_bridge, tmp_path):
    path = str(tmp_path / "power.db")
    b = start_bridge(SqliteSink(path))
    rows = readings(50)
    servers.publish(mosquitto.url, TOPIC, payloads(rows))
    servers.publish(mosquitto.url, TOPIC, payloads(rows[:10]))  # re-delivered readings
    servers.wait_until(lambda: b.counters()["written"] == 60, what="60 writes")
    db = sqlite3.connect(path)
    got = db.execute("SELECT measurement, host, time, power, energy, pulses FROM points ORDER BY time").fetchall()
    assert got == [("power_usage", "pico-hall", float(t), w, p / 1000, float(p)) for t, w, p in rows]


def test_influxdb_stopped_and_restarted_mid_run_loses_and_duplicates_nothing(mosquitto, influxdb, start_bridge):
    b = start_bridge(InfluxSink(influxdb.url, influxdb.db), retry_s=0.2, max_retry_s=0.5)
    rows = readings(90)
    msgs = payloads(rows)
    servers.publish(mosquitto.url, TOPIC, msgs[:30])
    servers.wait_until(lambda: b.counters()["written"] == 30, what="first 30 written")
    influxdb.stop()
    servers.publish(mosquitto.url, TOPIC, msgs[30:60])
    servers.wait_until(lambda: b.counters()["spooled"] == 30, what="30 spooled while InfluxDB is down")
    assert b.counters()["spool_depth"] == 30
    influxdb.start()
    servers.publish(mosquitto.url, TOPIC, msgs[60:])
    servers.wait_until(lambda: b.counters()["written"] == 90 and b.counters()["spool_depth"] == 0,
                       what="all 90 written")
    got = influx_rows(influxdb)
    assert [(r["time"], r["power"], r["pulses"]) for r in got] == [(t, w, p) for t, w, p in rows]


def test_spool_survives_a_bridge_restart_and_drains_in_order(mosquitto, influxdb, start_bridge):
    influxdb.stop()
    with pytest.raises(BridgeError):
        start_bridge(InfluxSink(influxdb.url, influxdb.db))  # unreachable at start-up: a one-line error
    influxdb.start()
    b = start_bridge(InfluxSink(influxdb.url, influxdb.db), retry_s=10, max_retry_s=10)
    influxdb.stop()
    rows = readings(40)
    servers.publish(mosquitto.url, TOPIC, payloads(rows))
    servers.wait_until(lambda: b.counters()["spooled"] == 40, what="40 spooled")
    b.stop()
    influxdb.start()
    b2 = start_bridge(InfluxSink(influxdb.url, influxdb.db))
    assert b2.spool.depth == 40
    servers.wait_until(lambda: b2.counters()["spool_depth"] == 0, what="spool drained")
    assert [(r["time"], r["power"]) for r in influx_rows(influxdb)] == [(t, w) for t, w, _ in rows]


def test_broker_restarted_mid_start_bridge_reconnects_and_keeps_writing(mosquitto, influxdb, start_bridge):
    b = start_bridge(InfluxSink(influxdb.url, influxdb.db))
    rows = readings(20)
    servers.publish(mosquitto.url, TOPIC, payloads(rows[:10]))
    servers.wait_until(lambda: b.counters()["written"] == 10, what="10 written")
    mosquitto.restart()
    servers.wait_until(lambda: b.connected, timeout=15, what="bridge reconnected")
    servers.publish(mosquitto.url, TOPIC, payloads(rows[10:]))
    servers.wait_until(lambda: len(influx_rows(influxdb)) == 20, what="20 readings in InfluxDB")
    assert [(r["time"], r["power"]) for r in influx_rows(influxdb)] == [(t, w) for t, w, _ in rows]


def test_bridge_killed_and_restarted_mid_run_loses_nothing_thanks_to_its_persistent_session(
        mosquitto, influxdb, bridge_process):
    rows = readings(60)
    msgs = payloads(rows)
    p = bridge_process("killed-bridge", "--stats-interval", "0.5")
    servers.publish(mosquitto.url, TOPIC, msgs[:20])
    servers.wait_until(lambda: len(influx_rows(influxdb)) == 20, what="first 20 in InfluxDB")
    p.kill()
    servers.publish(mosquitto.url, TOPIC, msgs[20:50])  # queued by the broker for the dead session
    p.start()
    servers.publish(mosquitto.url, TOPIC, msgs[50:])
    servers.wait_until(lambda: len(influx_rows(influxdb)) == 60, what="all 60 in InfluxDB")
    p.signal(signal.SIGUSR1)
    time.sleep(0.3)
    assert p.stop() == 0, p.err()[-500:]
    got = influx_rows(influxdb)
    assert [(r["time"], r["power"]) for r in got] == [(t, w) for t, w, _ in rows]
    # the restarted bridge got the 40 sent since, and again whatever the killed one had
    # stored but not yet acknowledged (stored again at the same timestamp: one row each)
    last = p.out().strip().splitlines()[-1]
    received = int(last.split()[0].split("=")[1])
    assert 40 <= received <= 60, p.out()
    assert last == "received=%d written=%d rejected=0 db_rejected=0 spooled=0 spool_depth=0" % (received, received)
    assert "Traceback" not in p.err()


def test_unreachable_broker_or_database_is_a_one_line_error_with_nonzero_exit(mosquitto, influxdb, tmp_path):
    free = servers.free_port()
    cases = [
        (["--broker", "mqtt://127.0.0.1:%d" % free, "--influx", influxdb.url], "cannot reach broker"),
        (["--broker", mosquitto.url, "--influx", "http://127.0.0.1:%d" % free], "unreachable"),
        (["--broker", mosquitto.url, "--sqlite", str(tmp_path / "no" / "dir.db")], "no such directory"),
        (["--broker", "http://x", "--sqlite", str(tmp_path / "a.db")], "mqtt://"),
        (["--broker", mosquitto.url, "--sqlite", str(tmp_path / "a.db"), "--share", "a/b"],
         "--share needs a group name without / + #"),
        (["--broker", mosquitto.url, "--sqlite", str(tmp_path / "a.db"), "--spool-dir", "/proc/no/spool"],
         "--spool-dir /proc/no/spool: No such file or directory"),
    ]
    for args, text in cases:
        r = subprocess.run([sys.executable, "-m", "picopower", "bridge", "--topic", "t", "--quiet",
                            "--spool-dir", str(tmp_path / "sp")] + args,
                           capture_output=True, text=True, timeout=30)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and text in lines[0], (args, r.stderr)
        assert lines[0].startswith("picopower bridge: error:")


HOSTILE = [
    (b"not json", "invalid JSON"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m"', "invalid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b"123.4", "not a JSON object"),
    (b'{"timestamp": 1700000000, "measurement": "m", "host": "h"}', "missing power"),
    (b'{"power": 1.0, "measurement": "m", "host": "h"}', "missing timestamp"),
    (b'{"power": 1.0, "timestamp": 1700000000, "host": "h"}', "missing measurement"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m"}', "missing host"),
    (b'{"power": "123.4", "timestamp": 1700000000, "measurement": "m", "host": "h"}', "power is not a number"),
    (b'{"power": 1.0, "timestamp": "1700000000", "measurement": "m", "host": "h"}',
     "timestamp is not a number"),
    (b'{"power": NaN, "timestamp": 1700000000, "measurement": "m", "host": "h"}', "power is not finite"),
    (b'{"power": Infinity, "timestamp": 1700000000, "measurement": "m", "host": "h"}', "power is not finite"),
    (b'{"power": 1e999, "timestamp": 1700000000, "measurement": "m", "host": "h"}', "power is not finite"),
    (b'{"power": -5.0, "timestamp": 1700000000, "measurement": "m", "host": "h"}', "power out of range"),
    (b'{"power": 5e9, "timestamp": 1700000000, "measurement": "m", "host": "h"}', "power out of range"),
    (b'{"power": 1.0, "timestamp": 99999999999, "measurement": "m", "host": "h"}', "timestamp in the future"),
    (b'{"power": 1.0, "timestamp": 1000, "measurement": "m", "host": "h"}', "timestamp before 2020"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m", "host": "a\\nb x=1"}',
     "host has control characters"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m\\n#", "host": "h"}',
     "measurement has control characters"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m", "host": "h\\\\"}', "host has a backslash"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m\\\\", "host": "h"}',
     "measurement has a backslash"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m", "host": ""}', "host is empty"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": 5, "host": "h"}', "measurement is not a string"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m", "host": "h", "energy": "9"}',
     "energy is not a number"),
    (b'{"power": 1.0, "timestamp": 1700000000, "measurement": "m", "host": "h", "pad": "' + b"x" * (1 << 20)
     + b'"}', "payload too large"),
]


def test_hostile_and_broken_messages_are_rejected_by_reason_and_nothing_wrong_is_written(
        mosquitto, influxdb, start_bridge):
    b = start_bridge(InfluxSink(influxdb.url, influxdb.db))
    t = int(time.time()) - 100
    # accepted, stored exactly: quotes, commas, spaces and equals signs are escaped, not interpreted
    odd = [("pico,evil=1 power=9", 'my "series"'), ('h"q\'', "a=b,c d"), ("x y", "m")]
    good = [json.dumps({"power": 10.0 + k, "timestamp": t + k, "measurement": m, "host": h})
            for k, (h, m) in enumerate(odd)]
    servers.publish(mosquitto.url, TOPIC, [p for p, _ in HOSTILE] + good)
    servers.wait_until(lambda: b.counters()["received"] == len(HOSTILE) + len(good), timeout=20,
                       what="every message received")
    servers.wait_until(lambda: b.counters()["written"] == len(good), what="good ones written")
    c = b.counters()
    expected = {}
    for _, reason in HOSTILE:
        expected[reason] = expected.get(reason, 0) + 1
    assert c["rejected_by_reason"] == expected
    assert c["rejected"] == len(HOSTILE)
    assert b.connected and b.error is None
    names = sorted(r["name"] for r in influxdb.points("SHOW MEASUREMENTS", influxdb.db))
    assert names == sorted({m for _, m in odd})
    stored = sorted((r["_measurement"], r["host"], r["time"], r["power"])
                    for r in influxdb.points("SELECT * FROM /.*/", influxdb.db))
    assert stored == sorted((m, h, t + k, 10.0 + k) for k, (h, m) in enumerate(odd))
    tag_keys = {r["tagKey"] for r in influxdb.points("SHOW TAG KEYS", influxdb.db)}
    assert tag_keys == {"host"}
    field_keys = {r["fieldKey"] for r in influxdb.points("SHOW FIELD KEYS", influxdb.db)}
    assert field_keys == {"power"}
