"""Home Assistant discovery (board/lib/discovery.py): the configs, on CPython,
under real MicroPython, and through a real Mosquitto read the way Home
Assistant reads it.

Templates are rendered with Jinja2's sandbox the way Home Assistant renders an
MQTT value_template: variables `value` and, only when the payload parses as
JSON, `value_json`; the result stripped; an undefined variable's attribute is
an error, which Home Assistant logs once per entity and message. `HomeAssistant`
below models what HA does with discovery over a real broker: the retained
configs under the prefix (an empty retained payload deletes one), a config
whose unique_id another topic already holds is ignored, and an entity's
expire_after timer restarts on every message on its state topic, before its
template runs (checked on HA 2025.4 and 2026.2, /work/shared/FACTS.md).
"""

import json
import re
import threading
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from picopower.firmware import app, config, discovery, message
from picopower.loads import Profile
from picopower.mqtt import Client, listen
from picopower.urls import parse_broker
from picopower.virtual import PulseSource, RecordingClient, VirtualBoard, make_app, run_until, settings_for
from tests import mpy, servers

START = 1800000000.0
BOARD = "e6614103e7aa0001"
NODE = "picopower_" + BOARD
ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
TWO = [{"PIN": 22, "IMP_PER_KWH": 1000, "SERIESNAME": "house"},
       {"PIN": 21, "IMP_PER_KWH": 800, "SERIESNAME": "heatpump"}]
HEALTH_KEYS = ["uptime_s", "reset_cause", "resets", "heap_free", "rssi", "queued", "dropped", "spilled",
               "unstamped", "rejected", "energy_damaged"]
_env = ImmutableSandboxedEnvironment()


def ha_render(template, payload):
    """What Home Assistant's MQTT sensor gets from `template` for `payload`."""
    variables = {"value": payload}
    try:
        variables["value_json"] = json.loads(payload)
    except ValueError:
        pass
    return _env.from_string(template).render(**variables).strip()


class Ch:
    """The attributes discovery reads from app.Channel."""

    def __init__(self, index, spec):
        self.index = index
        self.series = spec["seriesname"]
        self.name = spec["name"]
        self.imp = spec["imp_per_kwh"]


def channels_of(settings):
    return [Ch(i, spec) for i, spec in enumerate(settings["channels"])]


def ha_settings(**values):
    base = {"MQTT_TOPIC": "home/power", "HOSTNAME": "pico-meter", "HA_DISCOVERY": True}
    base.update(values)
    return settings_for(base)


def all_configs(settings, device_id=BOARD):
    return list(discovery.configs(settings, channels_of(settings), device_id))


def sensors(settings, device_id=BOARD):
    """The configs to publish (not the deletions), as {topic: config}."""
    return {t: c for t, c in all_configs(settings, device_id) if c is not None}


class Sent:
    """A client recording (topic, payload, retain, qos) and the feed() calls between."""

    def __init__(self):
        self.sent = []
        self.feeds = 0

    def publish(self, topic, payload, retain=False, qos=0):
        self.sent.append((topic, payload, retain, qos))

    def feed(self):
        self.feeds += 1


# --- (a) the configs themselves ---------------------------------------------------------------

def test_two_channels_give_4_sensor_and_11_diagnostic_configs_keyed_by_board_id_and_channel_position():
    s = ha_settings(CHANNELS=TWO, REPORT_INTERVAL_S=10)
    c = Sent()
    assert discovery.publish_all(c, s, channels_of(s), BOARD, c.feed) == 15
    configs = [(t, p) for t, p, _, _ in c.sent if p]
    assert [t for t, _ in configs][:4] == ["homeassistant/sensor/%s/%s/config" % (NODE, o) for o in (
        "ch0_power", "ch0_energy", "ch1_power", "ch1_energy")]
    assert [t for t, _ in configs][4:] == ["homeassistant/sensor/%s/%s/config" % (NODE, k) for k in HEALTH_KEYS]
    assert all(r is True and q == 1 and isinstance(p, bytes) for _, p, r, q in c.sent)
    assert c.feeds == len(c.sent) == 15 + 8  # the watchdog is fed after every publish
    cfgs = [json.loads(p) for _, p in configs]
    power, energy = cfgs[0], cfgs[1]
    assert (power["device_class"], power["unit_of_measurement"], power["state_class"]) == ("power", "W", "measurement")
    assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
        "energy", "kWh", "total_increasing")
    for cfg in cfgs[:4]:
        assert cfg["state_topic"] == "picopower/pico-meter/state"
        assert cfg["expire_after"] == 30  # 3 x REPORT_INTERVAL_S
    for cfg in cfgs:
        assert cfg["availability_topic"] == "picopower/pico-meter/status" == s["availability_topic"]
        assert (cfg["payload_available"], cfg["payload_not_available"]) == ("online", "offline")
        assert cfg["device"] == {"identifiers": [NODE], "name": "pico-meter", "manufacturer": "picopower",
                                 "model": discovery.MODEL, "sw_version": discovery.VERSION}
    assert [cfg["unique_id"] for cfg in cfgs[:4]] == [NODE + "_ch0_power", NODE + "_ch0_energy",
                                                      NODE + "_ch1_power", NODE + "_ch1_energy"]
    assert [cfg["name"] for cfg in cfgs[:4]] == ["Power house", "Energy house", "Power heatpump", "Energy heatpump"]
    assert {cfg.get("entity_category") for cfg in cfgs[4:]} == {"diagnostic"}
    assert {cfg["state_topic"] for cfg in cfgs[4:]} == {"home/power/status"}
    assert max(len(p) for _, p in configs) < 1024


def test_first_come_8_deletions_positions_2_3_and_the_hostname_keyed_topics_of_firmware_0_1():
    s = ha_settings(CHANNELS=TWO)
    deleted = [t for t, c in all_configs(s) if c is None]
    assert deleted == [
        "homeassistant/sensor/pico-meter/house_power/config", "homeassistant/sensor/pico-meter/house_energy/config",
        "homeassistant/sensor/pico-meter/heatpump_power/config",
        "homeassistant/sensor/pico-meter/heatpump_energy/config",
        "homeassistant/sensor/%s/ch2_power/config" % NODE, "homeassistant/sensor/%s/ch2_energy/config" % NODE,
        "homeassistant/sensor/%s/ch3_power/config" % NODE, "homeassistant/sensor/%s/ch3_energy/config" % NODE]
    assert [c is None for _, c in all_configs(s)] == [True] * 8 + [False] * 15
    c = Sent()
    discovery.publish_all(c, s, channels_of(s), BOARD, c.feed)
    assert [(p, r, q) for _, p, r, q in c.sent[:8]] == [(b"", True, 1)] * 8


def test_single_channel_entities_are_named_power_and_energy_and_ha_expire_s_overrides_three_intervals():
    cfgs = list(sensors(ha_settings(HA_EXPIRE_S=900)).values())
    assert [c["name"] for c in cfgs[:2]] == ["Power", "Energy"]
    assert [c["name"] for c in cfgs[2:5]] == ["Uptime", "Reset cause", "Resets"]
    assert [c["expire_after"] for c in cfgs[:2]] == [900, 900]
    assert all("expire_after" not in c for c in cfgs[2:])
    assert list(sensors(ha_settings(REPORT_INTERVAL_S=60)).values())[0]["expire_after"] == 180


def test_ids_stay_in_the_characters_ha_allows_for_any_board_id_hostname_and_channel_names():
    chans = [{"PIN": 22, "SERIESNAME": "heat pump"}, {"PIN": 21, "SERIESNAME": "heat/pump"},
             {"PIN": 20, "SERIESNAME": "Wärme+#"}]
    s = ha_settings(CHANNELS=chans, HOSTNAME="my pico #1", HA_PREFIX="ha", AVAILABILITY_TOPIC="pico/status")
    cfgs = all_configs(s, device_id="ab:cd")
    topics = [t for t, _ in cfgs]
    assert len(set(topics)) == len(topics) == 6 + 2 + 6 + 11
    uids = [c["unique_id"] for _, c in cfgs if c]
    assert len(set(uids)) == len(uids) == 17
    for t in topics:
        prefix, sensor, node, obj, config = t.split("/")
        assert (prefix, sensor, config) == ("ha", "sensor", "config")
        assert ID_RE.match(node) and ID_RE.match(obj)
    assert all(ID_RE.match(u) for u in uids)
    assert topics[2] == "ha/sensor/my_pico__1/heat_pump_1_power/config"  # firmware 0.1's name, deleted
    assert topics[8] == "ha/sensor/picopower_ab_cd/ch0_power/config"


def test_configs_of_another_board_differ_only_in_ids_topics_and_device():
    s = ha_settings(CHANNELS=TWO)
    a, b = all_configs(s, BOARD), all_configs(s, "0123456789abcdef")
    assert all_configs(s, BOARD) == a
    for (ta, ca), (tb, cb) in zip(a[8:], b[8:]):
        assert ta.replace(BOARD, "0123456789abcdef") == tb
        ca, cb = dict(ca), dict(cb)
        for k in ("unique_id", "device"):
            assert ca.pop(k) != cb.pop(k)
        assert ca == cb


# --- the board's state message and the templates ------------------------------------------------

def state_after(readings, chans=TWO):
    s = ha_settings(CHANNELS=chans)
    st_ = discovery.State(s, channels_of(s))
    for r in readings:
        st_.reading(*r)
    c = Sent()
    st_.publish(c)
    st_.publish(c)  # nothing new: nothing sent
    return s, c.sent


def test_state_message_holds_each_channels_latest_live_reading_once_qos0_not_retained():
    s, sent = state_after([(0, 10000, 2000.0, 123000, 0), (1, 10000, 800.0, 7990, 0),
                           (0, 20000, 2345.67, 123456, 0), (1, 20000, 812.0, 8000, 0)])
    assert [(t, r, q) for t, _, r, q in sent] == [("picopower/pico-meter/state", False, 0)]
    payload = sent[0][1].decode()
    assert json.loads(payload) == {"power0": 2345.7, "energy0": 123.456, "power1": 812.0, "energy1": 10.0}
    got = {c["unique_id"][len(NODE) + 1:]: ha_render(c["value_template"], payload)
           for c in list(sensors(s).values())[:4]}
    assert got == {"ch0_power": "2345.7", "ch0_energy": "123.456", "ch1_power": "812.0", "ch1_energy": "10.0"}
    assert len(payload) < 40 * 2 + 10


def test_a_revision_never_reaches_the_state_topic():
    _, sent = state_after([(0, 10000, 2000.0, 123000, 0), (0, 5000, 99999.0, 1, 1)])
    assert json.loads(sent[0][1]) == {"power0": 2000.0, "energy0": 123.0}
    _, sent = state_after([(0, 5000, 99999.0, 1, 1)])
    assert sent == []


def test_a_non_json_message_renders_nothing_on_all_15_templates_where_unguarded_ones_raise():
    s = ha_settings(CHANNELS=TWO)
    cfgs = list(sensors(s).values())
    for junk in ("not json", "", "{", "42", "[1, 2]", '"text"', "null"):
        assert [ha_render(c["value_template"], junk) for c in cfgs] == [""] * 15, junk
    with pytest.raises(Exception, match="value_json"):
        ha_render("{{ value_json.power }}", "not json")  # what firmware 0.1 rendered: HA logged an error


def test_health_templates_read_only_this_hosts_health_message():
    s = ha_settings(HOSTNAME="pico-1")
    diag = list(sensors(s).values())[2:]
    mine = {"host": "pico-1", "uptime_s": 3600, "reset_cause": 1, "resets": 3, "heap_free": 151234,
            "rssi": -61, "queued": 2, "dropped": 0, "spilled": 0, "unstamped": 5, "rejected": 17,
            "energy_damaged": 0}
    theirs = dict(mine, host="pico-2", uptime_s=7)
    got = [ha_render(c["value_template"], json.dumps(mine)) for c in diag]
    assert got == ["3600", "1", "3", "151234", "-61", "2", "0", "0", "5", "17", "0"]
    assert [ha_render(c["value_template"], json.dumps(theirs)) for c in diag] == [""] * 11
    # HA ignores an empty render only where it expects a number (a unit or a state_class);
    # a text sensor would be blanked by every other board's health message.
    assert all("unit_of_measurement" in c or "state_class" in c for c in sensors(s).values())


# Any name the board accepts (quotes included; backslashes are refused by config.name_problem).
names = st.text(st.characters(min_codepoint=32, blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20) \
    .filter(lambda t: config.name_problem(t) is None)


@hsettings(max_examples=60, deadline=None)
@given(host=names, other=names)
def test_health_template_selects_any_printable_host_including_quotes_and_backslashes(host, other):
    if host == other:
        other += "x"
    s = ha_settings(HOSTNAME=host, AVAILABILITY_TOPIC="pico/status")
    uptime = list(sensors(s).values())[2]
    assert ha_render(uptime["value_template"], json.dumps({"host": host, "uptime_s": 12})) == "12"
    assert ha_render(uptime["value_template"], json.dumps({"host": other, "uptime_s": 12})) == ""


# --- the app's wiring, on a virtual board -------------------------------------------------------

def test_app_publishes_discovery_on_each_connect_and_one_state_message_per_report_window(tmp_path):
    for enabled in (True, False):
        sent = []
        s = ha_settings(CHANNELS=TWO, HA_DISCOVERY=enabled)
        board = VirtualBoard([PulseSource([]), PulseSource([])],
                             lambda cid, will: RecordingClient(lambda t, p, r: sent.append((t, p, r))),
                             str(tmp_path / str(enabled)), START, uid=BOARD)
        app = make_app(board, s)
        run_until(app, board, 5e6)
        board.wifi_up = False
        run_until(app, board, 10e6)
        board.wifi_up = True
        run_until(app, board, 105e6)
        topics = [t for t, _, _ in sent]
        disc = [t for t in topics if t.startswith("homeassistant/")]
        states = [p for t, p, _ in sent if t == "picopower/pico-meter/state"]
        if not enabled:
            assert disc == [] and states == []
            continue
        assert app.link.state == "ONLINE"
        assert len(disc) == 2 * 23  # 15 configs and 8 deletions, on each of the 2 connects
        first_online = topics.index(s["availability_topic"])
        assert topics[first_online + 1:first_online + 24] == disc[:23]
        assert all(r for t, _, r in sent if t.startswith("homeassistant/"))
        # 10 windows of both channels: 20 readings on MQTT_TOPIC and 10 state messages (the 10 s
        # window closed with Wi-Fi off; its state went out on reconnect, as its readings did)
        assert topics.count("home/power") == 20
        assert len(states) == 10
        assert json.loads(states[-1]) == {"power0": 0.0, "energy0": 0.0, "power1": 0.0, "energy1": 0.0}


# --- (b) under the real MicroPython interpreter --------------------------------------------------

@pytest.mark.micropython
def test_micropython_publishes_the_same_23_messages_and_state_as_cpython_each_config_under_1kb():
    s = ha_settings(CHANNELS=[{"PIN": 22, "SERIESNAME": "house"}, {"PIN": 21, "SERIESNAME": "Wärmepumpe 'WP'"}])
    out = mpy.run_json("""
        import json
        import discovery
        settings = json.loads(%r)
        class Ch:
            pass
        chans = []
        for i, spec in enumerate(settings['channels']):
            c = Ch()
            c.index = i
            c.series = spec['seriesname']
            c.name = spec['name']
            c.imp = spec['imp_per_kwh']
            chans.append(c)
        class Client:
            def __init__(self):
                self.sent = []
            def publish(self, topic, payload, retain=False, qos=0):
                self.sent.append([topic, bytes(payload).decode(), retain, qos])
        feeds = []
        cl = Client()
        n = discovery.publish_all(cl, settings, chans, %r, lambda: feeds.append(1))
        state = discovery.State(settings, chans)
        state.reading(0, 10000, 2345.67, 123456, 0)
        state.reading(1, 10000, 812.0, 8000, 0)
        state.publish(cl)
        print(json.dumps({'n': n, 'feeds': len(feeds), 'sent': cl.sent}))
    """ % (json.dumps(s), BOARD))[0]
    assert out["n"] == 15 and out["feeds"] == 23
    want = all_configs(s)
    assert [t for t, _, _, _ in out["sent"][:23]] == [t for t, _ in want]
    assert [json.loads(p) if p else None for _, p, _, _ in out["sent"][:23]] == [c for _, c in want]
    assert all(r is True and q == 1 for _, _, r, q in out["sent"][:23])
    assert max(len(p.encode()) for _, p, _, _ in out["sent"]) < 1024
    assert out["sent"][23][1:] == ['{"power0": 2345.7, "energy0": 123.456, "power1": 812.0, "energy1": 8.0}',
                                   False, 0]


# --- (c) through a real broker, read as Home Assistant reads it -----------------------------------

class HomeAssistant:
    """Home Assistant's side of MQTT discovery over a real broker (see the module docstring)."""

    def __init__(self, url, prefix="homeassistant"):
        self.url = url
        self.prefix = prefix
        self.msgs = []  # (topic, payload) of every message, in arrival order
        self._lock = threading.Lock()
        self.c = listen(parse_broker(url), "#", self._on_message)

    def _on_message(self, topic, payload, retained):
        with self._lock:
            self.msgs.append((topic, payload.decode()))

    def retained_configs(self):
        """What HA finds at start-up: the retained configs under the prefix."""
        got = {}
        c = listen(parse_broker(self.url), self.prefix + "/#", lambda t, p, r: got.__setitem__(t, p) if r else None)
        time.sleep(0.3)
        c.close()
        return {t: json.loads(p) for t, p in got.items() if p}

    def entities(self):
        """{unique_id: config} of the entities HA makes; AssertionError on a
        unique_id held by two topics (HA ignores the later config)."""
        out = {}
        for topic, cfg in sorted(self.retained_configs().items()):
            assert cfg["unique_id"] not in out, "%s: unique_id already exists" % topic
            out[cfg["unique_id"]] = cfg
        return out

    def on_topic(self, topic, since=0):
        with self._lock:
            return [p for t, p in self.msgs[since:] if t == topic]

    def state(self, cfg, since=0):
        """The entity's values from its state topic's messages (empty renders are ignored, as HA does)."""
        values = [ha_render(cfg["value_template"], p) for p in self.on_topic(cfg["state_topic"], since)]
        return [v for v in values if v != ""]

    def mark(self):
        with self._lock:
            return len(self.msgs)

    def close(self):
        self.c.close()


@pytest.fixture
def ha(mosquitto):
    h = HomeAssistant(mosquitto.url)
    yield h
    h.close()


class Pico:
    """A virtual board running the firmware against the real broker, loads of constant watts."""

    def __init__(self, url, data_dir, watts, uid=BOARD, start=START, **values):
        self.s = ha_settings(**values)
        sources = [PulseSource(int(t * 1e6) for t in Profile.constant(w).pulses(ch["imp_per_kwh"], 0.3))
                   for w, ch in zip(watts, self.s["channels"])]
        self.board = VirtualBoard(sources, lambda cid, will: Client(parse_broker(url), cid, will), data_dir,
                                  start, uid=uid)
        self.app = make_app(self.board, self.s)

    def run(self, seconds):
        run_until(self.app, self.board, self.board.us + seconds * 1e6)
        return self

    def stop(self):
        """Goes quiet with a clean DISCONNECT: no last will, availability stays 'online'."""
        if self.app.link.client is not None:
            self.app.link.client.close()
            self.app.link.client = None

    @property
    def end_unix_s(self):
        return self.board.unix_ms() / 1000.0


def settle(ha, topic, n):
    servers.wait_until(lambda: len(ha.on_topic(topic)) >= n, 5, what="%d messages on %s" % (n, topic))


@pytest.mark.servers
def test_a_quiet_board_gets_0_state_messages_while_another_on_the_same_topic_sends_6(ha, mosquitto, tmp_path):
    one = Pico(mosquitto.url, str(tmp_path / "1"), [1500], uid="e6614103e7aa0001", HOSTNAME="pico-1").run(25)
    two = Pico(mosquitto.url, str(tmp_path / "2"), [700], uid="e6614103e7aa0002", HOSTNAME="pico-2").run(25)
    ents = ha.entities()
    power1 = ents["picopower_e6614103e7aa0001_ch0_power"]
    power2 = ents["picopower_e6614103e7aa0002_ch0_power"]
    assert power1["state_topic"] != power2["state_topic"]
    settle(ha, power2["state_topic"], 2)
    assert ha.state(power1)[-1] == "1500.0" and ha.state(power2)[-1] == "700.0"
    one.stop()
    quiet = ha.mark()
    two.run(60)
    settle(ha, power2["state_topic"], 8)
    # Both boards share MQTT_TOPIC, yet nothing restarts pico-1's expire_after timer: HA marks
    # its sensors unavailable 30 s after it went quiet; pico-2's stay fresh.
    assert ha.on_topic(power1["state_topic"], quiet) == []
    assert ha.state(power2, quiet) == ["700.0"] * 6
    assert len(ha.on_topic("home/power", quiet)) == 6
    two.stop()


@pytest.mark.servers
def test_renaming_hostname_keeps_the_same_15_entities_renamed_in_place_with_no_orphans(ha, mosquitto, tmp_path):
    Pico(mosquitto.url, str(tmp_path), [1200, 400], CHANNELS=TWO, HOSTNAME="kitchen").run(25).stop()
    before = ha.entities()
    assert len(before) == 15 and {c["device"]["name"] for c in before.values()} == {"kitchen"}
    mark = ha.mark()
    pico = Pico(mosquitto.url, str(tmp_path), [1200, 400], CHANNELS=TWO, HOSTNAME="pantry", start=START + 30)
    pico.run(25)
    after = ha.entities()
    assert sorted(after) == sorted(before)
    assert {c["device"]["name"] for c in after.values()} == {"pantry"}
    assert "kitchen" not in json.dumps(after)
    # working: available, and the power sensors read the renamed board's values
    assert ha.on_topic("picopower/pantry/status")[-1] == "online"
    assert ha.state(after[NODE + "_ch0_power"], mark)[-1] == "1200.0"
    assert ha.state(after[NODE + "_ch1_power"], mark)[-1] == "400.0"
    pico.stop()


@pytest.mark.servers
def test_renaming_a_channel_keeps_its_two_entities_under_the_new_name(ha, mosquitto, tmp_path):
    Pico(mosquitto.url, str(tmp_path), [1200, 400], CHANNELS=TWO).run(25).stop()
    before = ha.entities()
    mark = ha.mark()
    renamed = [dict(TWO[0], SERIESNAME="mains"), TWO[1]]
    pico = Pico(mosquitto.url, str(tmp_path), [1200, 400], CHANNELS=renamed, start=START + 30).run(25)
    after = ha.entities()
    assert sorted(after) == sorted(before) and len(after) == 15
    assert [after[NODE + "_ch0_%s" % k]["name"] for k in ("power", "energy")] == ["Power mains", "Energy mains"]
    assert ha.state(after[NODE + "_ch0_power"], mark)[-1] == "1200.0"
    assert [json.loads(p)["measurement"] for p in ha.on_topic("home/power", mark)][-2:] == ["mains", "heatpump"]
    pico.stop()


@pytest.mark.servers
def test_removing_a_channel_deletes_its_2_retained_configs_and_leaves_13_working(ha, mosquitto, tmp_path):
    Pico(mosquitto.url, str(tmp_path), [1200, 400], CHANNELS=TWO).run(25).stop()
    assert len(ha.entities()) == 15
    mark = ha.mark()
    pico = Pico(mosquitto.url, str(tmp_path), [1200], CHANNELS=TWO[:1], start=START + 30).run(25)
    after = ha.entities()
    assert len(after) == 13 and not any(u.startswith(NODE + "_ch1") for u in after)
    assert after[NODE + "_ch0_power"]["name"] == "Power"  # a single channel's entities need no qualifier
    assert ha.state(after[NODE + "_ch0_power"], mark)[-1] == "1200.0"
    pico.stop()


@pytest.mark.servers
def test_upgrading_from_hostname_keyed_configs_of_firmware_0_1_deletes_them(ha, mosquitto, tmp_path):
    old = Client(parse_broker(mosquitto.url))
    old.connect()
    for obj in ("house_power", "house_energy", "heatpump_power", "heatpump_energy"):
        old.publish("homeassistant/sensor/pico-meter/%s/config" % obj,
                    json.dumps({"unique_id": "picopower_%s_%s" % (BOARD, obj), "state_topic": "home/power"}), True)
    old.close()
    assert len(ha.entities()) == 4
    Pico(mosquitto.url, str(tmp_path), [1200, 400], CHANNELS=TWO).run(15).stop()
    after = ha.entities()
    assert len(after) == 15 and all(u.startswith(NODE + "_") for u in after)


@pytest.mark.servers
def test_non_json_messages_on_every_state_topic_render_nothing_for_all_15_entities(ha, mosquitto, tmp_path):
    pico = Pico(mosquitto.url, str(tmp_path), [1200, 400], CHANNELS=TWO).run(25)
    ents = ha.entities()
    mark = ha.mark()
    junk = Client(parse_broker(mosquitto.url))
    junk.connect()
    topics = sorted({c["state_topic"] for c in ents.values()} | {"home/power"})
    assert topics == ["home/power", "home/power/status", "picopower/pico-meter/state"]
    for topic in topics:
        junk.publish(topic, b"hello from a shell script")
    junk.close()
    settle(ha, topics[-1], 3)
    assert [ha.state(c, mark) for c in ents.values()] == [[]] * 15  # no template error, no value
    pico.stop()


@pytest.mark.servers
def test_a_reboot_republishes_the_same_15_configs_with_no_duplicate_entities(ha, mosquitto, tmp_path):
    Pico(mosquitto.url, str(tmp_path), [2400, 900], CHANNELS=TWO).run(45).stop()
    before = ha.retained_configs()
    mark = ha.mark()
    Pico(mosquitto.url, str(tmp_path), [2400, 900], CHANNELS=TWO, start=START + 50).run(15).stop()
    republished = {t: json.loads(p) for t, p in ha.msgs[mark:] if t.startswith("homeassistant/") and p}
    assert republished == before and len(before) == 15
    assert ha.retained_configs() == before
    assert len(ha.entities()) == 15


@pytest.mark.servers
def test_published_energy_never_decreases_across_a_reboot_between_persists(ha, mosquitto, tmp_path):
    # 3600 W at 1000 imp/kWh: a pulse a second. The board saves its total every PERSIST_INTERVAL_S
    # (600 s); a reboot 5 min after the last save must not send Home Assistant a lower total.
    pico = Pico(mosquitto.url, str(tmp_path), [3600], PERSIST_INTERVAL_S=600).run(305)
    pico.stop()
    state = "picopower/pico-meter/state"
    settle(ha, state, 30)
    Pico(mosquitto.url, str(tmp_path), [3600], PERSIST_INTERVAL_S=600, start=pico.end_unix_s).run(35).stop()
    settle(ha, state, 33)
    energy = [json.loads(p)["energy0"] for p in ha.on_topic(state)]
    assert all(b >= a for a, b in zip(energy, energy[1:])), energy
    readings = [json.loads(p)["energy"] for p in ha.on_topic("home/power")]
    assert all(b >= a for a, b in zip(readings, readings[1:]))


@pytest.mark.servers
def test_availability_topic_in_the_configs_holds_retained_online_and_the_will_turns_it_offline(mosquitto, tmp_path):
    pico = Pico(mosquitto.url, str(tmp_path), [500]).run(12)
    avail = list(sensors(pico.s).values())[0]["availability_topic"]
    seen = []
    probe = listen(parse_broker(mosquitto.url), avail, lambda t, p, r: seen.append((p.decode(), r)))
    servers.wait_until(lambda: seen, 5, what="the retained availability")
    assert seen[0] == ("online", True)
    # A dropped connection (no DISCONNECT): the broker publishes the will.
    pico.app.link.client.c.socket().close()
    servers.wait_until(lambda: ("offline", False) in seen, 10, what="the will")
    probe.close()
