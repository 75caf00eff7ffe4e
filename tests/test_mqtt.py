"""picopower/mqtt.py, the host's one MQTT client, against a real Mosquitto: what
the firmware's virtual boards, `simulate`, `deploy` and the tests all speak through."""

import threading

import pytest

from picopower.mqtt import Client, listen
from picopower.urls import parse_broker
from tests import servers
from tests.certs import CA

pytestmark = pytest.mark.servers


def test_retained_gives_the_retained_message_or_none_and_keeps_it_from_on_message(mosquitto):
    url = parse_broker(mosquitto.url)
    pub = Client(url, "writer")
    pub.connect()
    pub.publish("pico/status/kitchen/energy", b"0 1800000000 1234 1000", retain=True)
    pub.close()
    seen = []
    c = Client(url, "reader", on_message=lambda t, p, r: seen.append(t))
    c.connect()
    try:
        assert c.retained("pico/status/kitchen/energy") == b"0 1800000000 1234 1000"
        assert c.retained("pico/status/garage/energy") is None  # answered by UNSUBACK, not a timeout
        c.publish("pico/status/kitchen/energy", b"", retain=True)  # still subscribed? it would come back
        assert c.retained("pico/status/kitchen/energy") is None
    finally:
        c.close()
    assert seen == []


def test_a_hand_driven_client_needs_no_thread_and_publish_returns_after_the_pubback(mosquitto):
    got = []
    sub = listen(parse_broker(mosquitto.url), "t/#", lambda t, p, r: got.append(p))
    before = threading.active_count()
    c = Client(parse_broker(mosquitto.url), "board", will_topic="t/status")
    c.connect()
    for i in range(100):
        c.publish("t/data", b"%d" % i)
    assert threading.active_count() == before
    c.close()
    servers.wait_until(lambda: len(got) == 100, 5, what="100 messages")
    sub.close()
    assert got == [b"%d" % i for i in range(100)]


def test_a_ca_file_in_the_boards_der_form_verifies_the_broker_on_the_host_too(tmp_path):
    if not __import__("os").path.exists(servers.MOSQUITTO):
        pytest.skip("mosquitto is not installed")
    ca = CA(tmp_path / "ca")
    other = CA(tmp_path / "other", cn="rogue CA")
    with servers.Mosquitto(tls=ca.server(tmp_path / "srv", ["127.0.0.1"])) as broker:
        for ca_file in (ca.der, ca.pem):
            c = Client(parse_broker(broker.tls_url, ca_file), "der")
            c.connect()
            c.publish("t", b"1")
            c.close()
        c = Client(parse_broker(broker.tls_url, other.der), "rogue")
        with pytest.raises(OSError, match="certificate verify failed"):
            c.connect()


def test_a_ca_file_that_is_not_a_certificate_is_one_line(tmp_path):
    bad = tmp_path / "ca.der"
    bad.write_bytes(b"not a certificate")
    with pytest.raises(OSError, match=r"^CA file .*ca\.der is not a PEM or DER certificate"):
        Client(parse_broker("mqtts://127.0.0.1:8883", str(bad)), "x")
    with pytest.raises(OSError, match=r"^CA file .*nope\.pem: No such file"):
        Client(parse_broker("mqtts://127.0.0.1:8883", str(tmp_path / "nope.pem")), "x")
