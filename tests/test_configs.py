"""`picopower config`: each generated file parsed or run, and checked against the seed."""

import json
import os
import sqlite3
import subprocess
import threading
import time
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import paho.mqtt.client as mqtt
import pytest

from picopower import cli, configs
from picopower.firmware import message
from picopower.sinks import SqliteSink
from tests import servers

PASSWD = "/usr/bin/mosquitto_passwd"


def _out(capsys, *argv):
    assert cli.main(["config", *argv]) == 0
    return capsys.readouterr().out


def test_telegraf_conf_input_block_is_the_seeds_key_for_key_plus_influx_output(capsys):
    text = _out(capsys, "telegraf", "--broker", "mqtt://192.168.1.10:1884", "--topic", "home/power",
                "--topic", "home/heatpump", "--db", "energy")
    conf = tomllib.loads(text)
    (inp,) = conf["inputs"]["mqtt_consumer"]
    assert inp == {
        "servers": ["tcp://192.168.1.10:1884"],
        "topics": ["home/power", "home/heatpump", "home/power/revised", "home/heatpump/revised"],
        "topic_tag": "",
        "data_format": "json",
        "json_name_key": "measurement",
        "json_time_key": "timestamp",
        "json_time_format": "unix",
        "tag_keys": ["host"],
    }
    (out,) = conf["outputs"]["influxdb"]
    assert out["urls"] == ["http://127.0.0.1:8086"] and out["database"] == "energy"


def test_telegraf_conf_with_login_never_prints_the_password(capsys):
    text = _out(capsys, "telegraf", "--broker", "mqtt://board:s3cret@10.0.0.2", "--topic", "home/+")
    assert "s3cret" not in text
    (inp,) = tomllib.loads(text)["inputs"]["mqtt_consumer"]
    assert inp["username"] == "board" and inp["topics"] == ["home/+", "home/+/revised"]


def test_grafana_dashboard_uses_the_seeds_query_and_has_a_daily_energy_panel(capsys):
    dash = json.loads(_out(capsys, "grafana", "--series", "house"))
    assert dash["__inputs"][0]["pluginId"] == "influxdb"
    power, energy = dash["panels"]
    assert power["targets"][0]["query"] == (
        'SELECT last("power") FROM "house" WHERE $timeFilter GROUP BY time($interval), "host" ORDER BY time DESC')
    assert power["targets"][0]["rawQuery"] is True and power["fieldConfig"]["defaults"]["unit"] == "watt"
    assert 'last("energy")' in energy["targets"][0]["query"] and "time(1d)" in energy["targets"][0]["query"]
    assert energy["fieldConfig"]["defaults"]["unit"] == "kwatth"
    assert len({p["id"] for p in dash["panels"]}) == 2 and dash["title"]


def test_config_rejects_a_wildcard_data_topic_for_the_acl_with_one_line(capsys):
    assert cli.main(["config", "acl", "--topic", "home/#"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "wildcards" in err


# --- mosquitto.conf, really started ---------------------------------------

def _client(port, user=None, password=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if user:
        c.username_pw_set(user, password)
    got = []
    ready = threading.Event()
    c.on_connect = lambda cl, ud, fl, rc, pr: (got.append(("connect", rc)), ready.set())
    c.on_message = lambda cl, ud, msg: got.append((msg.topic, msg.payload.decode()))
    c.connect("127.0.0.1", port, 10)
    c.loop_start()
    assert ready.wait(5)
    return c, got


@pytest.mark.servers
def test_generated_anonymous_mosquitto_conf_starts_and_carries_a_reading(tmp_path, capsys):
    port = servers.free_port()
    conf = _out(capsys, "mosquitto", "--broker", "mqtt://127.0.0.1:%d" % port, "--bind", "127.0.0.1",
                "--data-dir", str(tmp_path / "data"))
    with servers.Mosquitto(port=port, conf_text=conf):
        sub, got = _client(port)
        sub.subscribe("home/power", 1)
        time.sleep(0.2)
        pub, _ = _client(port)
        pub.publish("home/power", '{"power": 12.5}', qos=1).wait_for_publish(5)
        servers.wait_until(lambda: ("home/power", '{"power": 12.5}') in got, what="the reading")
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def _acl_broker_conf(tmp_path, capsys):
    """(port, mosquitto.conf) with passwords for telegraf, kitchen and garage and the generated ACL."""
    port = servers.free_port()
    pw = tmp_path / "passwd"
    for i, (user, password) in enumerate((("telegraf", "readpw"), ("kitchen", "k1"), ("garage", "g1"))):
        subprocess.run([PASSWD, "-b"] + (["-c"] if i == 0 else []) + [str(pw), user, password], check=True)
    acl_path = tmp_path / "acl"
    acl_path.write_text(_out(capsys, "acl", "--topic", "home/power", "--host", "kitchen", "--host", "garage"))
    os.chmod(pw, 0o600)
    os.chmod(acl_path, 0o600)
    conf = _out(capsys, "mosquitto", "--broker", "mqtt://127.0.0.1:%d" % port, "--bind", "127.0.0.1",
                "--password-file", str(pw), "--acl", str(acl_path), "--data-dir", str(tmp_path / "data"))
    return port, conf


@pytest.mark.servers
def test_password_mosquitto_conf_refuses_anonymous_and_acl_keeps_each_board_to_its_topics(tmp_path, capsys):
    port, conf = _acl_broker_conf(tmp_path, capsys)
    assert "allow_anonymous false" in conf
    with servers.Mosquitto(port=port, conf_text=conf):
        anon, got_anon = _client(port)
        assert got_anon[0][0] == "connect" and got_anon[0][1].is_failure  # not authorised
        anon.loop_stop()
        reader, got = _client(port, "telegraf", "readpw")
        assert not got[0][1].is_failure
        reader.subscribe("#", 1)
        time.sleep(0.2)
        kitchen, _ = _client(port, "kitchen", "k1")
        for topic, payload in (("home/power", "kitchen reading"), ("picopower/kitchen/status", "online"),
                               ("picopower/garage/status", "spoofed offline"), ("home/other", "stray")):
            kitchen.publish(topic, payload, qos=1).wait_for_publish(5)
        servers.wait_until(lambda: ("picopower/kitchen/status", "online") in got, what="kitchen's status")
        time.sleep(0.3)
        received = [m for m in got if m[0] != "connect"]
        assert ("home/power", "kitchen reading") in received
        assert all(p not in ("spoofed offline", "stray") for _, p in received)
        for c in (reader, kitchen):
            c.disconnect()
            c.loop_stop()


@pytest.mark.servers
def test_acl_lets_a_board_publish_health_and_read_back_only_its_own_energy_floor(tmp_path, capsys):
    port, conf = _acl_broker_conf(tmp_path, capsys)
    with servers.Mosquitto(port=port, conf_text=conf):
        kitchen, _ = _client(port, "kitchen", "k1")
        garage, _ = _client(port, "garage", "g1")
        garage.publish("home/power/status/kitchen/energy", "spoofed 0", qos=1, retain=True).wait_for_publish(5)
        kitchen.publish("home/power/status", '{"host": "kitchen"}', qos=1, retain=True).wait_for_publish(5)
        kitchen.publish("home/power/status/kitchen/energy", "1234", qos=1, retain=True).wait_for_publish(5)
        for c in (kitchen, garage):
            c.disconnect()
            c.loop_stop()
        # After a power cut the board subscribes to its own floor: the retained total is there.
        again, got = _client(port, "kitchen", "k1")
        again.subscribe("home/power/status/kitchen/energy", 1)
        servers.wait_until(lambda: len(got) >= 2, what="the retained floor")
        assert got[1:] == [("home/power/status/kitchen/energy", "1234")]
        reader, seen = _client(port, "telegraf", "readpw")
        reader.subscribe("home/power/status", 1)
        servers.wait_until(lambda: len(seen) >= 2, what="the retained health message")
        assert seen[1:] == [("home/power/status", '{"host": "kitchen"}')]
        for c in (again, reader):
            c.disconnect()
            c.loop_stop()


def test_acl_text_names_each_board_and_its_status_topic():
    text = configs.acl(["a", "b"], "home/power")
    assert "user a\ntopic write home/power\ntopic write picopower/a/status" in text
    assert "user b\ntopic write home/power\ntopic write picopower/b/status" in text
    assert "picopower/b/status\ntopic write home/power/revised" in text


def test_mosquitto_conf_queue_holds_a_day_of_the_fleet_8640_readings_per_meter_at_10_s(capsys):
    one = _out(capsys, "mosquitto")
    assert "max_queued_messages 8640\n" in one and "persistence true\n" in one
    fleet = _out(capsys, "mosquitto", "--meters", "1000", "--interval", "30")
    assert "max_queued_messages 2880000\n" in fleet
    assert "max_queued_bytes %d\n" % (2880000 * configs.QUEUED_BYTES_PER_MESSAGE) in fleet
    assert "about %.1f MB of RAM" % (2880000 * configs.RAM_BYTES_PER_MESSAGE / 1e6) in fleet
    assert cli.main(["config", "mosquitto", "--interval", "0"]) == 2
    assert "--interval must be 1-3600" in capsys.readouterr().err


@pytest.mark.servers
def test_1500_readings_published_while_the_bridge_is_stopped_are_all_stored_with_the_generated_conf(
        tmp_path, capsys, start_bridge):
    port = servers.free_port()
    conf = _out(capsys, "mosquitto", "--broker", "mqtt://127.0.0.1:%d" % port, "--bind", "127.0.0.1",
                "--data-dir", str(tmp_path / "data"))
    path = str(tmp_path / "power.db")
    url = "mqtt://127.0.0.1:%d" % port
    t0 = int(time.time()) - 3600
    readings = [message.reading(100.0 + k % 50, t0 + k, "power", "pico-1", 1000 + k, 1000) for k in range(1500)]
    with servers.Mosquitto(port=port, conf_text=conf):
        start_bridge(SqliteSink(path), broker=url).stop()  # its persistent session now waits for it
        servers.publish(url, "home/power", readings, timeout=60)
        bridge = start_bridge(SqliteSink(path), broker=url)
        servers.wait_until(lambda: bridge.counters()["written"] >= 1500, timeout=20,
                           what="1500 stored (Mosquitto's default queue keeps 1000)")
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT time, power FROM points ORDER BY time").fetchall()
    assert stored == [(float(t0 + k), 100.0 + k % 50) for k in range(1500)]
