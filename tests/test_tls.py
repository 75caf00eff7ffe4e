"""Authenticated, encrypted MQTT: a private Mosquitto with a password file and a
TLS listener on a CA made here; the firmware's link on a virtual board connects
through picopower.mqtt.Client (mqtts:// + CA file, as every host command does).

Checked: the right credentials publish readings; a wrong or missing password,
an unknown CA, a certificate for another host and an expired certificate are
each refused with one log line naming the reason, followed by the link's
backoff (1 s, 2 s, 4 s ...); anonymous clients are refused; the password never
appears in the board's log, in an error, or in a URL's `.safe` form.
"""

import hashlib
import json
import socket
import ssl

import pytest

from tests import servers
from picopower.urls import UrlError, parse_broker
from picopower.mqtt import Client
from picopower.virtual import PulseSource, VirtualBoard, make_app, run_until, settings_for

from tests.certs import CA, sha256_fingerprint

pytestmark = pytest.mark.servers

START = 1800000000.0
PASSWORD = "Tr0ub4dor&3-horse"
READER_PW = "r3ader-only"


@pytest.fixture
def secure(tmp_path):
    """Mosquitto with a password file (no anonymous) and a TLS listener on a fresh CA."""
    if not __import__("os").path.exists(servers.MOSQUITTO):
        pytest.skip("mosquitto is not installed")
    ca = CA(tmp_path / "ca")
    tls = ca.server(tmp_path / "srv", ["127.0.0.1"])
    pw = servers.make_password_file(str(tmp_path / "passwd"), {"meter": PASSWORD, "reader": READER_PW})
    with servers.Mosquitto(password_file=pw, tls=tls) as broker:
        broker.ca = ca
        broker.certs_dir = tmp_path
        yield broker


def board_url(broker, user="meter", password=PASSWORD):
    cred = (user + ((":" + password) if password is not None else "") + "@") if user else ""
    return "mqtts://%s127.0.0.1:%d" % (cred, broker.tls_port)


def run_board(tmp_path, url, ca_file, seconds, user="meter", password=PASSWORD):
    s = settings_for({"MQTT_TOPIC": "home/power", "HOSTNAME": "pico-meter", "MQTT_PORT": parse_broker(url).port,
                      "MQTT_TLS": True, "MQTT_CA_FILE": ca_file, "MQTT_USER": user or "",
                      "MQTT_PASS": password or ""})
    times = [int((0.25 + 0.5 * k) * 1e6) for k in range(int(seconds * 2) + 10)]
    errors = []

    def factory(cid, will):
        try:
            return Client(parse_broker(url, ca_file), cid, will)
        except Exception as e:  # noqa: BLE001  (recorded, then re-raised for the link)
            errors.append(str(e))
            raise

    board = VirtualBoard([PulseSource(times)], factory, str(tmp_path / "flash"), START)
    app = make_app(board, s)
    run_until(app, board, seconds * 1e6, step_ms=250)
    if app.link.client is not None:
        app.link.client.close()
    return board, app, errors


def reader(broker, topic):
    import paho.mqtt.client as mqtt
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.username_pw_set("reader", READER_PW)
    c.tls_set(ca_certs=broker.ca.pem)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, 1)
    c.on_message = lambda cl, u, m: got.append(m.payload.decode())
    c.connect("127.0.0.1", broker.tls_port)
    c.loop_start()
    servers.wait_until(c.is_connected, what="reader connect")
    return c, got


def failures(board):
    return [line for line in board.logs if "retrying in" in line]


def assert_no_secret(board, app, errors):
    assert "\n" not in "".join(board.logs)
    for text in board.logs + errors:
        assert PASSWORD not in text
    assert PASSWORD not in repr(app.link.__dict__.get("client"))


def test_right_credentials_over_tls_deliver_every_reading_and_the_password_is_never_logged(secure, tmp_path):
    sub, got = reader(secure, "home/power")
    try:
        board, app, errors = run_board(tmp_path, board_url(secure), secure.ca.pem, 62)
        servers.wait_until(lambda: len(got) >= app.link.published, what="readings at the reader")
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert failures(board) == [] and errors == []
    assert app.link.published == 6
    msgs = [json.loads(p) for p in got]
    assert [m["timestamp"] for m in msgs] == [int(START) + 10 * k for k in range(1, 7)]
    assert all(abs(m["power"] - 7200) < 72 for m in msgs[1:])  # 2 pulses/s at 1000 imp/kWh
    assert_no_secret(board, app, errors)


def test_wrong_password_is_refused_with_one_line_not_authorized_and_backs_off_1_2_4_8_s(secure, tmp_path):
    board, app, errors = run_board(tmp_path, board_url(secure, password="wrong-" + PASSWORD[::-1]),
                                   secure.ca.pem, 12)
    lines = failures(board)
    assert len(lines) == 4  # attempts at 0, 1, 3, 7 s
    assert [line.split("retrying in ")[1].split(" s")[0] for line in lines] == ["1", "2", "4", "8"]
    for line in lines:
        assert "refused the connection: Not authorized" in line
        assert "mqtts://meter@127.0.0.1:%d" % secure.tls_port in line
    assert app.link.state == "OFFLINE" and app.link.published == 0
    assert app.outbox.size == 1  # the 10 s reading, kept for later
    assert "wrong-" not in "".join(board.logs)
    assert_no_secret(board, app, errors)


def test_missing_credentials_are_refused_as_not_authorized(secure, tmp_path):
    board, app, errors = run_board(tmp_path, board_url(secure, user=None), secure.ca.pem, 4, user=None,
                                   password=None)
    lines = failures(board)
    assert lines and all("refused the connection: Not authorized" in line for line in lines)
    assert app.link.published == 0


def test_anonymous_clients_cannot_publish_on_either_listener(secure):
    import paho.mqtt.client as mqtt
    sub, got = reader(secure, "#")
    try:
        for port, tls in ((secure.port, False), (secure.tls_port, True)):
            result = {}
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            if tls:
                c.tls_set(ca_certs=secure.ca.pem)
            c.on_connect = lambda cl, u, f, rc, p: result.setdefault("rc", rc)
            c.connect("127.0.0.1", port)
            servers.wait_until(lambda: (c.loop(0.05) or True) and "rc" in result, what="CONNACK")
            assert result["rc"].is_failure and str(result["rc"]) == "Not authorized"
            c.publish("home/power", b'{"power": 1.0}', qos=0)
            c.loop(0.1)
            c.disconnect()
        import time
        time.sleep(0.3)
        assert got == []
    finally:
        sub.disconnect()
        sub.loop_stop()


@pytest.mark.parametrize("case", ["unknown CA", "certificate for another host", "expired certificate"])
def test_a_broker_certificate_that_does_not_verify_is_refused_with_the_reason_in_one_line(case, tmp_path):
    if not __import__("os").path.exists(servers.MOSQUITTO):
        pytest.skip("mosquitto is not installed")
    ca = CA(tmp_path / "ca")
    trusted = ca.pem
    if case == "unknown CA":
        tls = CA(tmp_path / "rogue", cn="rogue CA").server(tmp_path / "srv", ["127.0.0.1"])
        reason = "certificate verify failed"
    elif case == "certificate for another host":
        tls = ca.server(tmp_path / "srv", ["broker.example"])
        reason = "IP address mismatch"
    else:
        tls = ca.server(tmp_path / "srv", ["127.0.0.1"], days=(-10, -1))
        reason = "certificate has expired"
    pw = servers.make_password_file(str(tmp_path / "passwd"), {"meter": PASSWORD})
    with servers.Mosquitto(password_file=pw, tls=tls) as broker:
        board, app, errors = run_board(tmp_path, board_url(broker), trusted, 2.5)
    lines = failures(board)
    assert len(lines) == 2
    assert all(reason in line and "cannot reach mqtts://meter@127.0.0.1" in line for line in lines), lines
    assert app.link.published == 0
    assert_no_secret(board, app, errors)


def test_the_server_certificates_sha256_is_what_a_board_pins_against_getpeercert_true(secure):
    # The recipe documented for the board: sha256(getpeercert(True)) == pinned fingerprint.
    ctx = ssl.create_default_context(cafile=secure.ca.pem)
    with socket.create_connection(("127.0.0.1", secure.tls_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            der = s.getpeercert(True)
    pinned = sha256_fingerprint(secure.certs_dir / "srv" / "server.pem")
    assert hashlib.sha256(der).hexdigest() == pinned
    other = secure.ca.server(secure.certs_dir / "other", ["127.0.0.1"], name="other")[1]
    assert sha256_fingerprint(other) != pinned


def test_password_stays_out_of_safe_urls_reprs_and_url_errors():
    u = parse_broker("mqtts://meter:%s@127.0.0.1:8883" % PASSWORD.replace("&", "%26"), "/ca.pem")
    assert u.password == PASSWORD
    for text in (u.safe, repr(u), str(u)):
        assert PASSWORD not in text and "meter@127.0.0.1:8883" in text
    for bad in ("mqtts://meter:%s@127.0.0.1:99999" % PASSWORD, "http://meter:%s@127.0.0.1" % PASSWORD,
                "mqtt://meter:%s@:1883" % PASSWORD):
        with pytest.raises(UrlError) as e:
            parse_broker(bad)
        assert PASSWORD not in str(e.value) and "\n" not in str(e.value)
