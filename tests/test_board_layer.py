"""board.py, the Pico's hardware layer, over umqtt.simple 1.8 (tests/umqtt_simple_1_8.py)
on MicroPython-like sockets with a virtual clock (tests/fakenet.py), and stand-ins for
machine/network/ntptime. Tests only.

The first group pins down the umqtt.simple 1.8 behaviours the firmware relies on
(one test each); the second shows what board.py makes of them.
"""

import importlib
import sys
import time
import types

import pytest

from picopower import firmware
from tests import fakenet
from tests.fakenet import BlockedForever, Broker, Net

BROKER = ("10.0.0.5", 1883)


class Clock(fakenet.Clock):
    """fakenet's virtual clock, with the `time.gmtime` board.py sets the RTC from."""

    gmtime = staticmethod(time.gmtime)

    @property
    def ms(self):
        return self.us // 1000


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def net(clock):
    n = Net(clock, dns={"broker.lan": BROKER[0], "pool.ntp.org": "10.0.0.123"})
    return n


def fresh_umqtt(monkeypatch, net):
    """A fresh umqtt.simple 1.8 stand-in whose `socket` is `net`'s, installed as `umqtt.simple`."""
    sys.modules.pop("tests.umqtt_simple_1_8", None)
    simple = importlib.import_module("tests.umqtt_simple_1_8")
    simple.socket = net.module()
    pkg = types.ModuleType("umqtt")
    pkg.simple = simple
    monkeypatch.setitem(sys.modules, "umqtt", pkg)
    monkeypatch.setitem(sys.modules, "umqtt.simple", simple)
    return simple


@pytest.fixture
def umqtt(monkeypatch, net):
    return fresh_umqtt(monkeypatch, net)


class _WLAN:
    def __init__(self, *a):
        self.joins = 0

    def active(self, *a):
        return True

    def config(self, **kw):
        pass

    def connect(self, ssid, password):
        self.joins += 1

    def isconnected(self):
        return True


def load_board(monkeypatch, net, clock):
    """board.py over the umqtt.simple 1.8 stand-in, `net`'s sockets and `clock`'s ticks."""
    fresh_umqtt(monkeypatch, net)
    machine = types.ModuleType("machine")
    machine.RTC = lambda: types.SimpleNamespace(datetime=lambda t: None)
    network = types.ModuleType("network")
    network.STA_IF = 0
    network.WLAN = _WLAN
    ntptime = types.ModuleType("ntptime")  # micropython-lib ntptime 0.2: module-level host and timeout
    ntptime.host, ntptime.timeout = "pool.ntp.org", 1
    ntptime.asked = []
    ntptime.time = lambda: ntptime.asked.append((ntptime.host, ntptime.timeout)) or 1_700_000_000
    for name, mod in (("machine", machine), ("network", network), ("ntptime", ntptime)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "socket", net.module())
    mod = firmware.load("board", fresh=True)
    mod.time = clock
    return mod


@pytest.fixture
def board(monkeypatch, net, clock):
    yield load_board(monkeypatch, net, clock)
    firmware.unload("board")


SETTINGS = {"mqtt_tls": False, "mqtt_ca_file": "", "mqtt_server": "broker.lan", "mqtt_port": 1883,
            "mqtt_user": "", "mqtt_pass": "", "mqtt_keepalive": 60}


def _client(umqtt, net, broker):
    net.peers[BROKER] = broker
    return umqtt.MQTTClient(b"pico-1", BROKER[0], BROKER[1])


# --- umqtt.simple 1.8, as the firmware meets it ----------------------------------------

def test_umqtt_1_8_connect_wipes_a_timeout_set_before_and_blocks_forever_on_a_silent_broker(umqtt, net):
    real_socket = umqtt.socket.socket

    def socket_with_timeout(*a):  # what board.py used to do: a 5 s timeout on every socket
        s = real_socket(*a)
        s.settimeout(5)
        return s
    umqtt.socket.socket = socket_with_timeout
    c = _client(umqtt, net, Broker(silent=True))
    with pytest.raises(BlockedForever):
        c.connect()
    assert net.sockets[-1].timeouts_set == [5, None]


def test_umqtt_1_8_connect_with_a_timeout_ends_on_a_silent_broker(umqtt, net, clock):
    c = _client(umqtt, net, Broker(silent=True))
    with pytest.raises(OSError) as e:
        c.connect(True, 3)
    assert e.value.args[0] == fakenet.ETIMEDOUT and clock.ms == 3000


def test_umqtt_1_8_resolves_the_server_name_on_every_connect(umqtt, net):
    net.peers[BROKER] = Broker()
    c = umqtt.MQTTClient(b"pico-1", "broker.lan")
    c.connect(True, 5)
    c.connect(True, 5)
    assert net.lookups == ["broker.lan", "broker.lan"]


def test_umqtt_1_8_qos1_publish_returns_only_after_its_puback_2_s_later(umqtt, net, clock):
    broker = Broker(puback_ms=2000)
    c = _client(umqtt, net, broker)
    c.connect(True, 5)
    c.publish(b"t", b"x", False, 1)
    assert clock.ms == 2000 and broker.published == [("t", b"x", False, 1)]


def test_umqtt_1_8_wait_msg_leaves_the_socket_blocking_so_a_stalled_puback_hangs(umqtt, net):
    c = _client(umqtt, net, Broker(stall_after=0))
    c.connect(True, 5)
    with pytest.raises(BlockedForever):
        c.publish(b"t", b"x", False, 1)
    assert net.sockets[-1].timeout is None


def test_umqtt_1_8_ping_leaves_the_pingresp_unread(umqtt, net):
    c = _client(umqtt, net, Broker())
    c.connect(True, 5)
    c.ping()
    assert c.check_msg() is None and net.sockets[-1].inbox == bytearray()  # wait_msg consumed it


def test_umqtt_1_8_subscribe_returns_at_the_suback_and_the_retained_message_comes_to_a_later_wait_msg(
        umqtt, net):
    broker = Broker()
    broker.retained["floor"] = b"42"
    c = _client(umqtt, net, broker)
    got = []
    c.set_callback(lambda topic, msg: got.append((topic, msg)))
    c.connect(True, 5)
    c.subscribe(b"floor")
    assert got == []
    c.ping()
    assert c.wait_msg() == 0x31 and got == [(b"floor", b"42")]


def test_umqtt_1_8_packet_id_65536_packs_0_and_its_puback_never_matches(umqtt, net):
    c = _client(umqtt, net, Broker())
    c.connect(True, 5)
    c.pid = 65535
    with pytest.raises(BlockedForever):
        c.publish(b"t", b"x", False, 1)


def test_umqtt_1_8_reports_a_bad_connack_with_assert(umqtt, net):
    class Garbage(Broker):
        def _connect(self, sock, body):
            self._send(sock, 0, b"HTTP")
    c = _client(umqtt, net, Garbage())
    with pytest.raises(AssertionError):
        c.connect(True, 5)


def test_umqtt_1_8_writes_with_micropythons_two_argument_write(umqtt):
    c = umqtt.MQTTClient(b"pico-1", BROKER[0])
    c.sock = types.SimpleNamespace(write=lambda buf: None)
    with pytest.raises(TypeError):  # CPython's socket has no write(buf, n)
        c.publish(b"t", b"x")


# --- board.py over it ----------------------------------------------------------------

def test_connect_to_a_silent_broker_fails_within_the_5_s_step_deadline(board, net, clock):
    net.peers[BROKER] = Broker(silent=True)
    client = board.mqtt_client(SETTINGS, "pico-1", "picopower/pico/status")
    with pytest.raises(OSError):
        client.connect()
    assert clock.ms == board.STEP_MS == 5000


def test_a_host_that_drops_syns_fails_the_connect_within_5_s(board, net, clock):
    net.peers[BROKER] = Broker(drops_syn=True)
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    with pytest.raises(OSError):
        client.connect()
    assert clock.ms == 5000


def test_a_connack_after_4_2_s_still_connects(board, net, clock):
    net.peers[BROKER] = Broker(connack_ms=4200)
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.connect()
    assert clock.ms == 4200


def test_a_connack_trickled_a_byte_every_2_s_fails_the_connect_within_5_s(board, net, clock):
    net.peers[BROKER] = Broker(trickle_ms=2000)  # its 4 bytes would take 6 s, each wait under 5 s
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    with pytest.raises(OSError):
        client.connect()
    assert clock.ms == 5000


def test_a_broker_stalling_mid_puback_fails_the_publish_within_5_s(board, net, clock):
    net.peers[BROKER] = Broker(stall_after=0, puback_ms=1000)
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.connect()
    start = clock.ms
    with pytest.raises(OSError):
        client.publish("t", b"x")
    assert clock.ms - start == 5000


def test_each_publish_gets_its_own_5_s_deadline(board, net, clock):
    broker = Broker(puback_ms=3000)
    net.peers[BROKER] = broker
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.connect()
    for i in range(3):
        client.publish("t", b"%d" % i)
    assert len(broker.published) == 3 and clock.ms == 9000


def test_ping_waits_for_the_pingresp_and_a_silent_broker_fails_it_within_5_s(board, net, clock):
    broker = Broker()
    net.peers[BROKER] = broker
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.connect()
    client.ping()
    assert broker.pings == 1 and net.sockets[-1].inbox == bytearray()
    broker.silent = True
    broker._send = lambda *a: None  # stops answering anything
    with pytest.raises(OSError):
        client.ping()
    assert clock.ms == 5000


def test_the_broker_name_is_resolved_once_per_wifi_join_not_per_connect(board, net):
    net.peers[BROKER] = Broker()
    board.wifi_start("Home", "pw")
    for _ in range(3):
        board.resolve("broker.lan")
        client = board.mqtt_client(SETTINGS, "pico-1", "s")
        client.connect()
        client.close()
    assert net.lookups == ["broker.lan"]
    board.wifi_start("Home", "pw")
    board.resolve("broker.lan")
    assert net.lookups == ["broker.lan", "broker.lan"]


def test_dns_failing_after_a_rejoin_falls_back_to_the_address_from_before(board, net):
    board.wifi_start("Home", "pw")
    assert board.resolve("broker.lan") == BROKER[0]
    board.wifi_start("Home", "pw")
    del net.dns["broker.lan"]
    assert board.resolve("broker.lan") == BROKER[0]
    with pytest.raises(OSError):
        board.resolve("never.seen")


def _dns_taking(seconds, board, net, clock, monkeypatch):
    """A DNS query lwIP keeps retrying for `seconds`; returns the watchdog's feed times (ms)."""
    feeds, timers = [], []

    class Timer:  # machine.Timer: a soft periodic timer
        PERIODIC = 1

        def __init__(self, mode, period, callback):
            self.callback, self.live = callback, True
            timers.append(self)

        def deinit(self):
            self.live = False
    machine = sys.modules["machine"]
    machine.Timer = Timer
    machine.WDT = lambda timeout: types.SimpleNamespace(feed=lambda: feeds.append(clock.ms))
    board.watchdog(8000)

    def slow_getaddrinfo(host, port):
        for _ in range(seconds):
            clock.sleep_ms(1000)
            for t in timers:
                if t.live:
                    t.callback(t)
        return [(2, 1, 0, "", (BROKER[0], port))]
    monkeypatch.setattr(net, "getaddrinfo", slow_getaddrinfo)
    assert board.resolve("broker.lan") == BROKER[0]
    assert not any(t.live for t in timers)
    return feeds


def test_a_dns_query_of_9_s_keeps_the_watchdog_fed_every_second(board, net, clock, monkeypatch):
    feeds = _dns_taking(9, board, net, clock, monkeypatch)
    assert feeds == [1000 * i for i in range(1, 10)]


def test_a_dns_query_of_30_s_is_fed_for_16_s_only_so_a_hang_still_resets(board, net, clock, monkeypatch):
    feeds = _dns_taking(30, board, net, clock, monkeypatch)
    assert max(feeds) == 15000 and len(feeds) == 15


def test_ntp_asks_the_address_resolved_at_join_with_a_2_s_timeout(board, net):
    board.wifi_start("Home", "pw")
    board.resolve("pool.ntp.org")
    assert board.ntp_unix_ms("pool.ntp.org") == 1_700_000_000_000
    assert sys.modules["ntptime"].asked == [("10.0.0.123", 2)]


def test_tls_handshake_gets_the_brokers_name_and_runs_under_the_deadline(board, net, monkeypatch):
    seen = []

    class Ctx:
        def __init__(self, proto):
            pass

        def wrap_socket(self, sock, server_hostname=None):
            seen.append((server_hostname, sock.timeout))
            return sock
    monkeypatch.setitem(sys.modules, "ssl", types.SimpleNamespace(
        SSLContext=Ctx, PROTOCOL_TLS_CLIENT=2, CERT_NONE=0, CERT_REQUIRED=2))
    net.peers[BROKER] = Broker()
    client = board.mqtt_client(dict(SETTINGS, mqtt_tls=True), "pico-1", "s")
    client.connect()
    assert seen == [("broker.lan", 5.0)]


def test_the_last_will_is_offline_retained_qos1_and_keepalive_is_passed(board, net):
    broker = Broker()
    net.peers[BROKER] = broker
    client = board.mqtt_client(SETTINGS, "pico-1", "picopower/pico/status")
    client.connect()
    assert broker.connects == [("pico-1", "picopower/pico/status", 60)]


def test_umqtt_assertion_on_a_bad_reply_becomes_an_oserror(board, net):
    class Garbage(Broker):
        def _connect(self, sock, body):
            self._send(sock, 0, b"HTTP")
    net.peers[BROKER] = Garbage()
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    with pytest.raises(OSError, match="mqtt"):
        client.connect()


def test_packet_ids_near_65535_force_a_reconnect_instead_of_a_hang(board, net):
    net.peers[BROKER] = Broker()
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.connect()
    client.c.pid = 65000
    with pytest.raises(OSError, match="packet ids"):
        client.publish("t", b"x")


def test_empty_credentials_connect_anonymously(board):
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    assert client.c.user is None and client.c.pswd is None


def test_closing_after_a_failure_sends_no_disconnect_so_the_last_will_fires(board, net):
    broker = Broker(stall_after=0)
    net.peers[BROKER] = broker
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.connect()
    with pytest.raises(OSError):
        client.publish("t", b"x")
    sock = net.sockets[-1]
    client.close()
    assert sock.closed and broker.disconnects == 0


def test_the_5_s_step_deadline_is_the_one_the_watchdog_setting_must_outlast(board):
    from picopower.firmware import config
    assert board.STEP_MS == config.NETWORK_STEP_MS == 5000
    assert config.MIN_WATCHDOG_MS > board.STEP_MS


def test_the_retained_energy_floor_is_read_back_by_subscribe_and_a_ping(board, net):
    broker = Broker()
    broker.retained["home/power/floor"] = b"1,2,3"
    net.peers[BROKER] = broker
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    client.connect()
    assert board.mqtt_retained(client, "home/power/floor") == b"1,2,3"
    assert board.mqtt_retained(client, "home/power/none") is None
    assert broker.subscribes == ["home/power/floor", "home/power/none"] and broker.pings == 2


def test_the_watchdog_is_fed_after_every_bounded_step_whoever_calls_it(board, net, clock):
    net.peers[BROKER] = Broker(connack_ms=4200, puback_ms=4200)
    client = board.mqtt_client(SETTINGS, "pico-1", "s")
    feeds = []
    client.feed = lambda: feeds.append(clock.ms)
    client.connect()
    board.mqtt_retained(client, "home/power/floor")  # SUBSCRIBE, then PINGREQ: two steps
    client.publish("t", b"x")
    assert feeds == [4200, 8400, 12600, 16800]


def test_a_failed_ntp_answer_makes_the_next_try_ask_dns_again(board, net):
    board.wifi_start("Home", "pw")
    board.resolve("pool.ntp.org")

    def no_answer():
        raise OSError(110)
    sys.modules["ntptime"].time = no_answer
    with pytest.raises(OSError):
        board.ntp_unix_ms("pool.ntp.org")
    board.resolve("pool.ntp.org")
    assert net.lookups == ["pool.ntp.org", "pool.ntp.org"]  # a pool server may be gone for good


def test_a_raw_sockaddr_from_micropythons_unix_port_resolves_to_its_dotted_address(board, net, monkeypatch):
    sockaddr_in = b"\x02\x00\x07\x5b" + bytes([10, 0, 0, 5]) + bytes(8)
    monkeypatch.setattr(net, "getaddrinfo", lambda host, port: [(2, 1, 6, "", sockaddr_in)])
    assert board.resolve("broker.lan") == "10.0.0.5"


def test_a_machine_module_without_timers_still_resolves(board, net, clock):
    sys.modules["machine"].WDT = lambda timeout: types.SimpleNamespace(feed=lambda: None)
    board.watchdog(8000)  # and no machine.Timer
    assert board.resolve("broker.lan") == BROKER[0]
