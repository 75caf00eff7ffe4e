"""The whole firmware against misbehaving brokers: App on a virtual Pico whose MQTT client
is the real board.py over umqtt.simple 1.8 (tests/umqtt_simple_1_8.py) on MicroPython-like
sockets (tests/fakenet.py), all on one virtual clock. The watchdog is instrumented: every
feed is timed, and the longest gap must stay below WATCHDOG_MS (8 s), or the Pico would
reset and lose its RAM queue. Every reading taken must reach the broker once the broker
behaves again.
"""

import json
import socket
import threading

import pytest

from picopower import firmware
from picopower.virtual import PulseSource, VirtualBoard, make_app, settings_for
from tests.fakenet import Broker, Clock, Net
from tests.test_board_layer import load_board

BROKER = ("127.0.0.1", 1883)
TOPIC = "home/power"


class WatchedBoard(VirtualBoard):
    """A virtual Pico whose watchdog times its feeds, and whose clock drives the fake network."""

    def watchdog(self, ms):
        self.wdt_ms = ms
        self.last_feed = self.us
        self.longest_gap_ms = 0
        return self

    def feed(self):
        self.longest_gap_ms = max(self.longest_gap_ms, (self.us - self.last_feed) // 1000)
        self.last_feed = self.us

    # the clock fakenet waits on: pulses keep firing while a socket blocks
    def now_us(self):
        return self.us

    def advance_to(self, us):
        self.advance(us)

    def mqtt_retained(self, client, topic):
        return self.hw.mqtt_retained(client, topic)  # the real one: SUBSCRIBE, then a PINGREQ

    # MicroPython's `time` for board.py's deadlines
    ticks_add = Clock.ticks_add
    ticks_diff = Clock.ticks_diff


class Rig:
    def __init__(self, monkeypatch, tmp_path, broker, discovery=False):
        pulses = PulseSource(int(i * 1.8e6) for i in range(1, 100000))  # 2 kW at 1000 imp/kWh
        self.board = WatchedBoard([pulses], None, str(tmp_path), 1_760_000_000)
        self.net = Net(self.board)
        self.net.peers[BROKER] = broker
        self.broker = broker
        self.hw = load_board(monkeypatch, self.net, self.board)
        self.board.hw = self.hw
        self.hw.time = self.board
        settings = settings_for({"MQTT_SERVER": BROKER[0], "MQTT_TOPIC": TOPIC, "WATCHDOG_MS": 8000,
                                 "HA_DISCOVERY": discovery, "QUEUE_SIZE": 2880})
        self.board.mqtt_factory = lambda cid, will: self.hw.mqtt_client(settings, cid, will)
        self.app = make_app(self.board, settings)

    def run(self, seconds):
        """The firmware's own main loop (app.run) for `seconds` of virtual time."""
        end = self.board.us + seconds * 1000000
        while self.board.us < end:
            self.board.sleep_ms(self.app.step())

    def readings_received(self):
        stamps = set()
        for topic, payload, retain, qos in self.broker.published:
            if topic == TOPIC:
                stamps.add(json.loads(payload)["timestamp"])
        return len(stamps)

    def run_until_drained(self, limit_s=3600):
        for _ in range(limit_s // 10):
            if self.app.outbox.size == 0 and self.app.link.state == "ONLINE":
                return
            self.run(10)

    def heal_and_check_every_reading_arrives(self, at_least):
        """The broker behaves again: every reading taken reaches it, and no feed came late."""
        self.broker.heal()
        self.run_until_drained()
        assert self.readings_received() == self.app.readings >= at_least
        assert self.board.longest_gap_ms < 8000


@pytest.fixture(autouse=True)
def _unload():
    yield
    firmware.unload("board")


def test_a_silent_broker_for_5_minutes_costs_no_reading_and_no_watchdog_reset(monkeypatch, tmp_path):
    rig = Rig(monkeypatch, tmp_path, Broker(silent=True))
    rig.run(300)
    assert rig.app.outbox.size >= 29 and rig.broker.connects  # it kept trying
    rig.heal_and_check_every_reading_arrives(at_least=30)


def test_a_dead_broker_host_for_5_minutes_costs_no_reading_and_no_watchdog_reset(monkeypatch, tmp_path):
    rig = Rig(monkeypatch, tmp_path, Broker(drops_syn=True))
    rig.run(300)
    rig.heal_and_check_every_reading_arrives(at_least=30)


def test_a_broker_pc_switched_off_for_5_minutes_while_online_costs_no_reading_and_no_watchdog_reset(
        monkeypatch, tmp_path):
    rig = Rig(monkeypatch, tmp_path, Broker())
    rig.run(120)
    assert rig.app.link.state == "ONLINE"
    rig.broker.switch_off()
    rig.run(300)
    assert rig.app.outbox.size >= 29
    rig.heal_and_check_every_reading_arrives(at_least=42)


def test_a_broker_answering_in_2_2_s_with_discovery_on_costs_no_reading_and_no_watchdog_reset(
        monkeypatch, tmp_path):
    rig = Rig(monkeypatch, tmp_path, Broker(connack_ms=2200, puback_ms=2200), discovery=True)
    rig.run(600)
    assert any(t.startswith("homeassistant/") for t, _, _, _ in rig.broker.published)
    rig.heal_and_check_every_reading_arrives(at_least=55)


def test_a_broker_answering_in_4_2_s_costs_no_reading_and_no_watchdog_reset(monkeypatch, tmp_path):
    rig = Rig(monkeypatch, tmp_path, Broker(connack_ms=4200, puback_ms=4200))
    rig.run(600)
    rig.heal_and_check_every_reading_arrives(at_least=55)


def test_a_broker_stalling_mid_puback_with_30_readings_queued_loses_none(monkeypatch, tmp_path):
    rig = Rig(monkeypatch, tmp_path, Broker(silent=True))
    rig.run(305)
    assert rig.app.outbox.size >= 30
    rig.broker.heal()
    rig.broker.stall_after = 3  # 'online' and two readings acknowledged, then half a PUBACK
    rig.run(120)
    assert rig.app.outbox.size >= 28
    rig.heal_and_check_every_reading_arrives(at_least=40)


def test_a_broker_that_starts_closing_after_each_publish_still_gets_every_reading(monkeypatch, tmp_path):
    rig = Rig(monkeypatch, tmp_path, Broker())
    rig.run(120)
    rig.broker.close_after_publish = True
    rig.run(600)
    assert rig.readings_received() >= rig.app.readings - 2  # one reading per connection keeps up
    rig.heal_and_check_every_reading_arrives(at_least=72)


def test_a_broker_closing_after_each_publish_from_boot_costs_no_reading(monkeypatch, tmp_path):
    rig = Rig(monkeypatch, tmp_path, Broker(close_after_publish=True))
    rig.run(600)
    assert rig.app.outbox.size == rig.app.readings >= 59  # queued: the floor is read before any reading goes
    rig.heal_and_check_every_reading_arrives(at_least=60)


# --- the same board.py over real sockets, against misbehaving brokers on 127.0.0.1 ----------

class _LoopbackBroker:
    """Accepts one client; answers CONNECT unless `silent`, then sends half a PUBACK and
    holds the connection open until the test ends, or gives up after 10 s so nothing hangs for good."""

    def __init__(self, silent):
        self.silent = silent
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.gave_up = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(1024)  # CONNECT
            if not self.silent:
                conn.sendall(b"\x20\x02\x00\x00")
                conn.recv(1024)  # PUBLISH
                conn.sendall(b"\x40")  # the first byte of its PUBACK, and nothing more
            self.gave_up = not self.done.wait(10)

    def close(self):
        self.done.set()
        self.thread.join(15)
        self.listener.close()


@pytest.fixture
def loopback_board(monkeypatch):
    import time as pytime

    class Ticks:
        """MicroPython's ticks on the real monotonic clock."""

        def ticks_ms(self):
            return int(pytime.monotonic() * 1000) & ((1 << 30) - 1)

        ticks_add = WatchedBoard.ticks_add
        ticks_diff = WatchedBoard.ticks_diff

    from tests.fakenet import LoopbackSockets
    hw = load_board(monkeypatch, types_net(LoopbackSockets), None)
    hw.time = Ticks()
    monkeypatch.setattr(hw, "STEP_MS", 300, raising=False)  # the same code path as 5 s, sooner
    return hw


def types_net(module):
    """What load_board wants of a network: its socket module."""
    return type("LoopbackNet", (), {"module": staticmethod(lambda: module)})()


def _loopback_settings(port):
    return {"mqtt_tls": False, "mqtt_ca_file": "", "mqtt_server": "127.0.0.1", "mqtt_port": port,
            "mqtt_user": "", "mqtt_pass": "", "mqtt_keepalive": 60}


def test_on_loopback_a_broker_silent_after_accept_fails_connect_by_the_deadline_not_by_hanging(loopback_board):
    broker = _LoopbackBroker(silent=True)
    try:
        client = loopback_board.mqtt_client(_loopback_settings(broker.port), "pico-1", "s")
        with pytest.raises(OSError):
            client.connect()
        client.close()
    finally:
        broker.close()
    assert not broker.gave_up  # the deadline ended the wait, not the broker hanging up


def test_on_loopback_a_broker_stalling_mid_puback_fails_the_publish_by_the_deadline(loopback_board):
    broker = _LoopbackBroker(silent=False)
    try:
        client = loopback_board.mqtt_client(_loopback_settings(broker.port), "pico-1", "s")
        client.connect()
        with pytest.raises(OSError):
            client.publish("home/power", b"{}")
        client.close()
    finally:
        broker.close()
    assert not broker.gave_up


def test_discovery_to_a_broker_answering_in_2_2_s_merges_no_report_window(monkeypatch, tmp_path):
    # 23 retained discovery messages at 2.2 s each: sent one per loop step, so
    # windows keep closing meanwhile (in one step they merged 5).
    rig = Rig(monkeypatch, tmp_path, Broker(connack_ms=2200, puback_ms=2200), discovery=True)
    rig.run(600)
    rig.heal_and_check_every_reading_arrives(at_least=59)
    stamps = sorted(json.loads(p)["timestamp"] for t, p, _, _ in rig.broker.published if t == TOPIC)
    # A window closes when the 2.2 s publish under way ends: late by up to
    # that, never a whole window.
    assert max(b - a for a, b in zip(stamps, stamps[1:])) <= 15
