"""board.py, the Pico's hardware layer, over stand-ins for machine/network/umqtt (tests only)."""

import sys
import types

import pytest

from picopower import firmware


class FakeSocket:
    def __init__(self, *args):
        self.timeout = "unset"

    def settimeout(self, t):
        self.timeout = t


class FakeMQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
        self.args = dict(client_id=client_id, server=server, port=port, user=user, password=password,
                         keepalive=keepalive, ssl=ssl)
        self.sock = None
        self.pid = 0
        self.will = None
        self.fail_with = None

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.will = (topic, msg, retain, qos)

    def connect(self, clean_session=True):
        self.sock = sys.modules["umqtt.simple"].socket.socket()
        if self.fail_with:
            raise self.fail_with

    def publish(self, topic, msg, retain=False, qos=0):
        self.pid += 1
        if self.fail_with:
            raise self.fail_with


@pytest.fixture
def board(monkeypatch):
    machine = types.ModuleType("machine")
    network = types.ModuleType("network")
    ntptime = types.ModuleType("ntptime")
    umqtt = types.ModuleType("umqtt")
    simple = types.ModuleType("umqtt.simple")
    simple.MQTTClient = FakeMQTTClient
    umqtt.simple = simple
    socket_mod = types.ModuleType("socket")
    socket_mod.socket = FakeSocket
    socket_mod.getaddrinfo = lambda host, port: [(0, 0, 0, "", (host, port))]
    for name, mod in (("machine", machine), ("network", network), ("ntptime", ntptime),
                      ("umqtt", umqtt), ("umqtt.simple", simple)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "socket", socket_mod)
    mod = firmware.load("board", fresh=True)
    yield mod
    firmware.unload("board")


SETTINGS = {"mqtt_tls": False, "mqtt_ca_file": "", "mqtt_server": "broker.lan", "mqtt_port": 1883,
            "mqtt_user": "", "mqtt_pass": "", "mqtt_keepalive": 60}


def test_every_umqtt_socket_gets_the_5_second_timeout_before_connecting(board):
    client = board.mqtt_client(SETTINGS, "pico-1", "picopower/pico/status")
    client.connect()
    assert client.c.sock.timeout == board.SOCKET_TIMEOUT_S == 5
    assert client.c.will == (b"picopower/pico/status", b"offline", True, 1)
    assert client.c.args["keepalive"] == 60


def test_umqtt_assertion_on_a_bad_reply_becomes_an_oserror(board):
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.c.fail_with = AssertionError()
    with pytest.raises(OSError, match="mqtt"):
        client.connect()


def test_packet_ids_near_65535_force_a_reconnect_instead_of_a_hang(board):
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.connect()
    client.c.pid = 65000
    with pytest.raises(OSError, match="packet ids"):
        client.publish("t", b"x")


def test_empty_credentials_connect_anonymously(board):
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    assert client.c.args["user"] is None and client.c.args["password"] is None
