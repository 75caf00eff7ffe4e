"""The private test servers: start on loopback, answer, keep data across restart, clean up."""

import os
import socket

import pytest

from tests import servers

pytestmark = pytest.mark.servers


def test_mosquitto_delivers_a_qos1_message_and_keeps_a_persistent_session_across_restart(mosquitto):
    import paho.mqtt.client as mqtt
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="keeper", clean_session=False)
    c.on_message = lambda cl, u, m: got.append(m.payload)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("t", qos=1)
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    servers.wait_until(lambda: c.is_connected(), what="connect")
    servers.publish(mosquitto.url, "t", [b"one"])
    servers.wait_until(lambda: got == [b"one"], what="first message")
    c.disconnect()
    c.loop_stop()
    servers.publish(mosquitto.url, "t", [b"two"])  # queued for the offline persistent session
    mosquitto.restart()                            # saved on SIGTERM, loaded on start
    c.reconnect()
    c.loop_start()
    try:
        servers.wait_until(lambda: got == [b"one", b"two"], what="queued message after restart")
    finally:
        c.disconnect()
        c.loop_stop()


def test_mosquitto_listens_only_on_loopback_and_port_is_free_after_stop():
    with servers.Mosquitto() as m:
        with open(m.conf_path) as f:
            listeners = [line for line in f if line.startswith("listener")]
        assert listeners == ["listener %d 127.0.0.1\n" % m.port]
        m.stop()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", m.port), timeout=0.5).close()
    assert not os.path.exists(m.dir)


def test_mosquitto_password_file_refuses_anonymous_and_wrong_password(tmp_path):
    import paho.mqtt.client as mqtt
    pw = servers.make_password_file(str(tmp_path / "pw"), {"meter": "s3cret"})
    with servers.Mosquitto(password_file=pw) as m:
        results = {}
        for label, cred in (("good", ("meter", "s3cret")), ("bad", ("meter", "nope")), ("anon", None)):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            if cred:
                c.username_pw_set(*cred)
            c.on_connect = lambda cl, u, f, rc, p, label=label: results.__setitem__(label, rc.is_failure)
            c.connect("127.0.0.1", m.port)
            servers.wait_until(lambda: (c.loop(0.05) or True) and label in results, what=label)
            c.disconnect()
        assert results == {"good": False, "bad": True, "anon": True}


def test_mosquitto_tls_listener_verifies_with_the_test_ca_and_refuses_an_unknown_ca(tmp_path):
    import ssl
    import paho.mqtt.client as mqtt
    certs = servers.make_test_certs(str(tmp_path / "certs"))
    other = servers.make_test_certs(str(tmp_path / "other"))
    with servers.Mosquitto(tls=certs) as m:
        assert m.tls_url == "mqtts://127.0.0.1:%d" % m.tls_port
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.tls_set(ca_certs=certs[0])
        c.connect("127.0.0.1", m.tls_port)
        c.loop_start()
        try:
            servers.wait_until(c.is_connected, what="TLS connect")
        finally:
            c.disconnect()
            c.loop_stop()
        bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        bad.tls_set(ca_certs=other[0])
        with pytest.raises(ssl.SSLError):
            bad.connect("127.0.0.1", m.tls_port)


def test_influxdb_answers_ping_within_10s_and_keeps_points_across_restart(influxdb, influx_query):
    assert influxdb.startup_s < 10
    influxdb.write(["power,host=pico power=123.4 1700000000"], influxdb.db)
    assert influx_query('SELECT * FROM "power"') == [
        {"_measurement": "power", "time": 1700000000, "host": "pico", "power": 123.4}]
    port = influxdb.port
    influxdb.restart()
    assert influxdb.port == port
    assert influx_query('SELECT "power" FROM "power"')[0]["power"] == 123.4


def test_influxdb_stopped_refuses_connections_and_query_errors_are_raised(influxdb):
    with pytest.raises(servers.ServerError):
        influxdb.query('SELECT * FROM "nope"', db="no_such_db")
    influxdb.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", influxdb.port), timeout=0.5).close()


def test_the_servers_are_test_infrastructure_and_nothing_in_the_shipped_package_needs_them():
    import importlib.util
    import pathlib

    import picopower
    assert importlib.util.find_spec("picopower.servers") is None
    package = pathlib.Path(picopower.__file__).parent
    users = [p.name for p in package.rglob("*.py") if "from tests" in p.read_text() or "import tests" in p.read_text()]
    assert users == []
