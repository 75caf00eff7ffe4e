"""Bridge faults with real servers: InfluxDB's partial write, and the spool's disk filling up."""

import logging
import re
import subprocess
import time

import pytest

from picopower.firmware import message
from picopower.sinks import InfluxSink
from tests import servers
from tests.conftest import TOPIC

pytestmark = pytest.mark.servers


def payloads(n, series, host="pico-1", start=None):
    start = start or int(time.time()) - 3600
    return [message.reading(100.0 + k, start + k, series, host, 1000 + k, 1000) for k in range(n)]


def bridge_log(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "picopower.bridge"]


def test_a_partial_write_counts_74_written_and_26_db_rejected_as_influxdb_says_dropped_26(
        mosquitto, influxdb, start_bridge, caplog):
    # a field of another type in the same shard makes InfluxDB drop those points, and only those
    influxdb.write(['power_usage,host=old pulses="not a number" %d' % (int(time.time()) - 7200)], influxdb.db)
    caplog.set_level(logging.INFO, logger="picopower.bridge")
    msgs = payloads(74, "house") + payloads(26, "power_usage")
    msgs = [m for pair in zip(msgs[:26], msgs[74:]) for m in pair] + msgs[26:74]  # mixed in every batch
    start_bridge(InfluxSink(influxdb.url, influxdb.db)).stop()
    servers.publish(mosquitto.url, TOPIC, msgs)  # queued for the bridge's session
    b = start_bridge(InfluxSink(influxdb.url, influxdb.db))
    servers.wait_until(lambda: b.counters()["written"] + b.counters()["db_rejected"] == 100, what="100 handled")
    c = b.counters()
    assert (c["written"], c["db_rejected"]) == (74, 26)
    assert len(influxdb.points('SELECT * FROM "house"', influxdb.db)) == 74
    refusals = [m for m in bridge_log(caplog) if "dropped" in m]
    assert sum(int(re.search(r"and dropped (\d+):", m).group(1)) for m in refusals) == 26
    assert all(re.search(r"dropped=(\d+)", m).group(1) == re.search(r"and dropped (\d+):", m).group(1)
               for m in refusals)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 128 KiB tmpfs: room for about 1200 spooled readings."""
    d = tmp_path / "disk"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % r.stderr.strip())
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_full_spool_disk_holds_readings_at_the_broker_with_one_log_line_and_all_3000_are_stored_later(
        mosquitto, influxdb, start_bridge, tiny_disk, caplog):
    caplog.set_level(logging.INFO, logger="picopower.bridge")
    b = start_bridge(InfluxSink(influxdb.url, influxdb.db), spool_dir=str(tiny_disk / "spool"),
                     retry_s=0.2, max_retry_s=0.5)
    influxdb.stop()
    start = int(time.time()) - 3600
    msgs = payloads(3000, "power_usage", start=start)
    servers.publish(mosquitto.url, TOPIC, msgs, timeout=60)
    holding = lambda: [m for m in bridge_log(caplog) if "holding the readings unacknowledged" in m]  # noqa: E731
    servers.wait_until(holding, what="the spool's disk full")
    time.sleep(1.0)  # a few retries of the held batch and of the spool
    c = b.counters()
    assert len(holding()) == 1 and "No space left on device" in holding()[0]
    assert 0 < c["spooled"] < 3000 and c["received"] < 3000  # the rest waits at the broker
    assert b.error is None
    influxdb.start()
    servers.wait_until(lambda: b.counters()["written"] >= 3000 and b.counters()["spool_depth"] == 0,
                       timeout=30, what="all 3000 written, the spool empty")
    assert b.error is None
    got = influxdb.points('SELECT "power" FROM "power_usage"', influxdb.db)
    assert [(r["time"], r["power"]) for r in got] == [(start + k, 100.0 + k) for k in range(3000)]
    log = bridge_log(caplog)
    assert sum("unreachable" in m for m in log) == 1 and sum("answers again" in m for m in log) == 1
    assert len(holding()) == 1 and sum("readings flow again" in m for m in log) == 1
