"""Several bridges behind one broker: `picopower bridge --share GROUP` (MQTT shared subscriptions)."""

import signal

import pytest

from picopower.firmware import message
from tests import servers
from tests.conftest import TOPIC

pytestmark = pytest.mark.servers


def counters(out):
    """The counters of a bridge's last stats line, as a dict of ints."""
    last = [ln for ln in out.splitlines() if ln.startswith("received=")][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in last.split() if "=" in kv)}


def test_three_bridges_share_3000_readings_one_killed_mid_run_and_each_is_stored_once_at_its_timestamp(
        mosquitto, influxdb, bridge_process):
    start = 1764000000
    readings = [(start + 10 * k, 100.0 + (k % 997) / 10) for k in range(3000)]
    msgs = [message.reading(w, t, "power", "pico-%d" % (k % 30), 1000 + k, 1000)
            for k, (t, w) in enumerate(readings)]
    bridges = [bridge_process("bridge-%d" % i, "--share", "ours") for i in (1, 2, 3)]
    servers.publish(mosquitto.url, TOPIC, msgs[:1000])
    bridges[1].kill()  # mid-run: whatever it took and had not acknowledged waits at the broker
    servers.publish(mosquitto.url, TOPIC, msgs[1000:2000])
    # Mosquitto 2 keeps handing the dead member its share: it waits for the same client id
    bridges[1].start()
    servers.publish(mosquitto.url, TOPIC, msgs[2000:])

    def stored():
        rows = influxdb.points('SELECT "power", "host" FROM "power"', influxdb.db)
        return rows if len(rows) >= 3000 else None

    try:
        rows = servers.wait_until(stored, timeout=30, what="3000 readings stored")
    except AssertionError as e:
        n = len(influxdb.points('SELECT "power" FROM "power"', influxdb.db))
        raise AssertionError("%s: %d stored; %s" % (e, n, " | ".join(b.err()[-600:] for b in bridges)))
    for b in bridges:
        b.signal(signal.SIGUSR1)
    assert [b.stop() for b in bridges] == [0, 0, 0]
    # one row per reading, with its value: a reading taken twice was overwritten at its timestamp
    assert sorted((r["time"], r["power"]) for r in rows) == readings
    c = [counters(b.out()) for b in bridges]
    assert all(0 < x["received"] < 2000 for x in c), c  # shared, not each bridge taking everything
    assert all(x["received"] == x["written"] and x["rejected"] == x["db_rejected"] == 0 for x in c), c
    assert all("Traceback" not in b.err() for b in bridges)
