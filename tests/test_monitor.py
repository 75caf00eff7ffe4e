"""`picopower monitor`: the meter table from a real broker, garbage tolerated."""

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from picopower import cli, dashboard
from picopower.monitor import Meters, Monitor
from picopower.urls import parse_broker

from picopower.firmware import message  # the firmware's own message format


def test_readings_garbage_and_status_messages_build_one_meter_per_host_and_series():
    m = Meters()
    t0 = 1_700_000_000
    m.handle("home/power", message.reading(1500.0, t0, "power", "kitchen", 12000, 1000), now=t0)
    m.handle("home/power", message.reading(2000.5, t0 + 10, "power", "kitchen", 12005, 1000), now=t0 + 10)
    m.handle("home/power", message.reading(300.0, t0 + 10, "heatpump", "kitchen", 800, 800), now=t0 + 10)
    m.handle("home/power", '{"power": "42.5", "timestamp": "%d", "measurement": "power", "host": "seed"}' % t0)
    for junk in (b"\xff\xfe", "not json", "[1, 2]", '{"power": "lots", "host": "x"}', '{"power": 5}',
                 '{"power": NaN, "host": "x"}', '{"power": true, "host": "x"}'):
        m.handle("home/power", junk)
    m.handle("picopower/kitchen/status", b"online")
    m.handle("picopower/garage/status", b"offline")
    m.handle("picopower/kitchen2/status", b"maybe")
    rows = {(mt.host, mt.series): (mt, st) for mt, st in m.rows()}
    kitchen, status = rows[("kitchen", "power")]
    assert (kitchen.watts, kitchen.energy, kitchen.count, status) == (2000.5, 12.005, 2, "online")
    assert kitchen.today_kwh == pytest.approx(0.005)
    assert rows[("kitchen", "heatpump")][0].energy == 1.0
    assert rows[("seed", "power")][0].watts == 42.5
    assert m.garbage == 8 and m.messages == 14
    assert m.hosts_without_readings() == [("garage", "offline")]


def test_today_kwh_restarts_at_the_first_reading_of_a_new_day():
    m = Meters()
    day = 86400 * 19700  # a UTC midnight; the check below uses the local date of each reading
    from datetime import datetime
    times = [day - 7200 + 600 * i for i in range(24)]
    for i, t in enumerate(times):
        m.handle("t", message.reading(100.0, t, "p", "h", 1000 + 10 * i, 1000))
    (meter, _), = m.rows()
    last_day = datetime.fromtimestamp(times[-1]).date()
    first_of_day = next(i for i, t in enumerate(times) if datetime.fromtimestamp(t).date() == last_day)
    assert meter.today_kwh == pytest.approx(10 * (len(times) - 1 - first_of_day) / 1000)


def test_sparkline_scales_recent_power_to_eight_levels():
    assert dashboard.sparkline([0, 100, 200, 300, 400, 500, 600, 700]) == "▁▂▃▄▅▆▇█"
    assert dashboard.sparkline([5, 5, 5]) == "▄▄▄" and dashboard.sparkline([]) == ""
    assert len(dashboard.sparkline(range(100), width=24)) == 24


def _publish(port, items):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port, 10)
    c.loop_start()
    for topic, payload, retain in items:
        c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


@pytest.mark.servers
def test_monitor_once_prints_the_table_of_meters_seen_on_a_real_broker(mosquitto, capsys):
    now = int(time.time())
    # Retained availability first: the monitor must get it on subscribe.
    _publish(mosquitto.port, [("picopower/garage/status", "offline", True),
                              ("picopower/kitchen/status", "online", True)])

    def later():
        time.sleep(0.4)
        _publish(mosquitto.port, [("home/power", message.reading(1234.5, now, "power", "kitchen", 98765, 1000), False),
                                  ("home/power", "garbage", False)])
    threading.Thread(target=later).start()
    rc = cli.main(["monitor", "--broker", mosquitto.url, "--topic", "home/power", "--once", "1.2"])
    out = capsys.readouterr().out
    assert rc == 0
    kitchen = [ln for ln in out.splitlines() if ln.strip().startswith("kitchen")][0].split()
    assert kitchen[:5] == ["kitchen", "power", "1234.5", "98.765", "0.000"] and "online" in kitchen
    garage = [ln for ln in out.splitlines() if ln.strip().startswith("garage")][0]
    assert "offline" in garage
    assert "ignored 1" in out and "\x1b[" not in out


@pytest.mark.servers
def test_monitor_once_exits_1_when_no_meter_publishes(mosquitto, capsys):
    assert cli.main(["monitor", "--broker", mosquitto.url, "--topic", "home/power", "--once", "0.3"]) == 1


def test_unreachable_broker_is_a_one_line_error_exit_2(capsys):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main(["monitor", "--broker", "mqtt://127.0.0.1:%d" % port, "--topic", "t", "--once", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("picopower monitor: error: cannot reach the broker mqtt://127.0.0.1:")
    assert "Traceback" not in "".join(err)


@pytest.mark.servers
def test_monitor_sees_the_last_will_turn_a_board_offline(mosquitto):
    mon = Monitor(parse_broker(mosquitto.url), ["home/power"]).start()
    try:
        board = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        board.will_set("picopower/attic/status", "offline", qos=1, retain=True)
        board.connect("127.0.0.1", mosquitto.port, 10)
        board.loop_start()
        board.publish("picopower/attic/status", "online", qos=1, retain=True).wait_for_publish(5)
        deadline = time.time() + 5
        while mon.meters.status.get("attic") != "online" and time.time() < deadline:
            time.sleep(0.02)
        assert mon.meters.status.get("attic") == "online"
        board.loop_stop()
        board._sock.close()  # the connection drops without DISCONNECT: the will fires
        deadline = time.time() + 5
        while mon.meters.status.get("attic") != "offline" and time.time() < deadline:
            time.sleep(0.02)
        assert mon.meters.status.get("attic") == "offline"
    finally:
        mon.stop()
