"""Home Assistant discovery (board/lib/discovery.py): the configs, on CPython,
under real MicroPython, and through a real Mosquitto across a reboot.

Templates are rendered with Jinja2's sandbox the way Home Assistant renders an
MQTT value_template (variables `value` and `value_json`, result stripped), so
"Home Assistant reads this channel's power from the seed's JSON" is checked on
the real messages, not on the template's text.
"""

import json
import re
import threading

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tests import servers
from picopower.loads import Profile
from picopower.urls import parse_broker
from picopower.virtual import PahoClient, PulseSource, RecordingClient, VirtualBoard, make_app, settings_for
from picopower.firmware import discovery
from picopower.firmware import message

from tests import mpy

START = 1800000000.0
ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
TWO = [{"PIN": 22, "IMP_PER_KWH": 1000, "SERIESNAME": "house"},
       {"PIN": 21, "IMP_PER_KWH": 800, "SERIESNAME": "heatpump"}]
_env = ImmutableSandboxedEnvironment()


def ha_render(template, payload):
    """What Home Assistant's MQTT sensor gets from `template` for `payload`."""
    return _env.from_string(template).render(value=payload, value_json=json.loads(payload)).strip()


class Ch:
    """The four attributes discovery reads from app.Channel."""

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


def all_configs(settings, device_id="e6614103e70"):
    return [(t, c) for t, c in discovery.configs(settings, channels_of(settings), device_id)]


# --- (a) the configs themselves ---------------------------------------------------------------

def test_two_channels_give_four_retained_qos1_configs_with_power_and_energy_sensor_fields():
    s = ha_settings(CHANNELS=TWO, REPORT_INTERVAL_S=10)
    sent = []

    class Client:
        def publish(self, topic, payload, retain, qos):
            sent.append((topic, payload, retain, qos))

    n = discovery.publish_all(Client(), s, channels_of(s), "e6614103e70")
    assert n == 4
    assert [t for t, _, _, _ in sent] == [
        "homeassistant/sensor/pico-meter/house_power/config",
        "homeassistant/sensor/pico-meter/house_energy/config",
        "homeassistant/sensor/pico-meter/heatpump_power/config",
        "homeassistant/sensor/pico-meter/heatpump_energy/config",
    ]
    assert all(retain is True and qos == 1 and isinstance(p, bytes) for _, p, retain, qos in sent)
    cfgs = [json.loads(p) for _, p, _, _ in sent]
    power, energy = cfgs[0], cfgs[1]
    assert (power["device_class"], power["unit_of_measurement"], power["state_class"]) == ("power", "W", "measurement")
    assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
        "energy", "kWh", "total_increasing")
    for c in cfgs:
        assert c["state_topic"] == "home/power"
        assert c["availability_topic"] == "picopower/pico-meter/status" == s["availability_topic"]
        assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        assert c["expire_after"] == 30  # 3 x REPORT_INTERVAL_S
        assert c["device"] == {"identifiers": ["picopower_e6614103e70"], "name": "pico-meter",
                               "manufacturer": "picopower", "model": discovery.MODEL,
                               "sw_version": discovery.VERSION}
        assert ID_RE.match(c["unique_id"])
    assert [c["unique_id"] for c in cfgs] == [
        "picopower_e6614103e70_house_power", "picopower_e6614103e70_house_energy",
        "picopower_e6614103e70_heatpump_power", "picopower_e6614103e70_heatpump_energy"]
    assert [c["name"] for c in cfgs] == ["house power", "house energy", "heatpump power", "heatpump energy"]
    assert max(len(p) for _, p, _, _ in sent) < 1024


def test_single_default_channel_is_named_power_and_energy_and_ha_expire_s_overrides_three_intervals():
    s = ha_settings(HA_EXPIRE_S=900, SERIESNAME="power")
    cfgs = all_configs(s)
    assert [t for t, _ in cfgs] == ["homeassistant/sensor/pico-meter/power_power/config",
                                    "homeassistant/sensor/pico-meter/power_energy/config"]
    assert [c["name"] for _, c in cfgs] == ["Power", "Energy"]
    assert {c["expire_after"] for _, c in cfgs} == {900}
    assert all_configs(ha_settings(REPORT_INTERVAL_S=60))[0][1]["expire_after"] == 180


def test_topic_ids_are_sanitized_and_names_that_collide_after_sanitizing_stay_distinct():
    chans = [{"PIN": 22, "SERIESNAME": "heat pump"}, {"PIN": 21, "SERIESNAME": "heat/pump"},
             {"PIN": 20, "SERIESNAME": "Wärme+#"}]
    s = ha_settings(CHANNELS=chans, HOSTNAME="my pico #1", HA_PREFIX="ha", AVAILABILITY_TOPIC="pico/status")
    cfgs = all_configs(s, device_id="ab:cd")
    topics = [t for t, _ in cfgs]
    assert len(set(topics)) == 6
    uids = [c["unique_id"] for _, c in cfgs]
    assert len(set(uids)) == 6
    for t in topics:
        prefix, sensor, node, obj, config = t.split("/")
        assert (prefix, sensor, config) == ("ha", "sensor", "config")
        assert node == "my_pico__1"
        assert ID_RE.match(obj)
    assert all(ID_RE.match(u) for u in uids)
    assert topics[2] == "ha/sensor/my_pico__1/heat_pump_1_power/config"


def test_template_reads_only_its_own_channels_and_hosts_message_from_the_shared_topic():
    s = ha_settings(CHANNELS=TWO)
    cfgs = all_configs(s)
    house = message.reading(2345.67, 1800000000, "house", "pico-meter", 123456, 1000)
    heat = message.reading(812.0, 1800000000, "heatpump", "pico-meter", 8000, 800)
    other_board = message.reading(99.0, 1800000000, "house", "garage-pico", 5, 1000)
    got = {c["unique_id"].split("e70_")[1]: [ha_render(c["value_template"], m) for m in (house, heat, other_board)]
           for _, c in cfgs}
    assert got == {
        "house_power": ["2345.7", "", ""],
        "house_energy": ["123.456", "", ""],
        "heatpump_power": ["", "812.0", ""],
        "heatpump_energy": ["", "10.0", ""],
    }


names = st.text(st.characters(min_codepoint=32, blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20) \
    .filter(lambda t: t.strip())


@hsettings(max_examples=60, deadline=None)
@given(series=names, other=names, host=names)
def test_template_selects_on_any_printable_series_and_host_including_quotes_and_backslashes(series, other, host):
    if series == other:
        other = other + "x"
    s = ha_settings(HOSTNAME=host, AVAILABILITY_TOPIC="pico/status",
                    CHANNELS=[{"PIN": 22, "SERIESNAME": series}, {"PIN": 21, "SERIESNAME": other}])
    cfgs = all_configs(s)
    mine = message.reading(1234.5, 1800000000, series, host, 2000, 1000)
    theirs = message.reading(55.0, 1800000000, other, host, 10, 1000)
    assert ha_render(cfgs[0][1]["value_template"], mine) == "1234.5"
    assert ha_render(cfgs[0][1]["value_template"], theirs) == ""
    assert ha_render(cfgs[1][1]["value_template"], mine) == "2.0"
    assert ha_render(cfgs[3][1]["value_template"], theirs) == "0.01"
    for t, c in cfgs:
        assert ID_RE.match(t.split("/")[2]) and ID_RE.match(t.split("/")[3])


def test_configs_are_identical_for_the_same_board_and_differ_only_in_ids_for_another_board():
    s = ha_settings(CHANNELS=TWO)
    a = all_configs(s, "e6614103e70")
    assert all_configs(s, "e6614103e70") == a
    b = all_configs(s, "0123456789ab")
    assert [c["unique_id"] for _, c in b] != [c["unique_id"] for _, c in a]
    for (_, ca), (_, cb) in zip(a, b):
        ca, cb = dict(ca), dict(cb)
        for k in ("unique_id", "device"):
            ca.pop(k), cb.pop(k)
        assert ca == cb


# --- the app's wiring, on a virtual board -------------------------------------------------------

def _drive(board, app, seconds, step_ms=500):
    end = board.us + int(seconds * 1e6)
    while board.us < end:
        app.step()
        board.advance(board.us + min(app.idle_ms(), step_ms) * 1000 + 1)


def test_app_publishes_discovery_after_online_on_each_connect_and_not_at_all_when_off(tmp_path):
    for enabled in (True, False):
        sent = []
        s = ha_settings(CHANNELS=TWO, HA_DISCOVERY=enabled)
        board = VirtualBoard([PulseSource([]), PulseSource([])],
                             lambda cid, will: RecordingClient(lambda t, p, r: sent.append((t, p, r))),
                             str(tmp_path / str(enabled)), START)
        app = make_app(board, s)
        _drive(board, app, 5)
        board.wifi_up = False
        _drive(board, app, 5)
        board.wifi_up = True
        _drive(board, app, 90)
        disc = [t for t, _, r in sent if t.startswith("homeassistant/")]
        if not enabled:
            assert disc == []
            continue
        assert app.link.state == "ONLINE"
        assert len(disc) == 8  # 4 configs, on each of the 2 connects
        first_online = [t for t, _, _ in sent].index(s["availability_topic"])
        assert [t for t, _, _ in sent][first_online + 1:first_online + 5] == disc[:4]
        assert all(r for t, _, r in sent if t.startswith("homeassistant/"))


# --- (b) under the real MicroPython interpreter --------------------------------------------------

@pytest.mark.micropython
def test_micropython_publishes_the_same_four_configs_as_cpython_each_under_1kb():
    s = ha_settings(CHANNELS=[{"PIN": 22, "SERIESNAME": "house"}, {"PIN": 21, "SERIESNAME": "Wärmepumpe 'WP'"}])
    out = mpy.run_json("""
        import json, gc
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
        cl = Client()
        n = discovery.publish_all(cl, settings, chans, 'e6614103e70')
        print(json.dumps({'n': n, 'sent': cl.sent}))
    """ % json.dumps(s))[0]
    assert out["n"] == 4
    want = all_configs(s)
    assert [t for t, _, _, _ in out["sent"]] == [t for t, _ in want]
    assert [json.loads(p) for _, p, _, _ in out["sent"]] == [c for _, c in want]
    assert all(r is True and q == 1 for _, _, r, q in out["sent"])
    assert max(len(p.encode()) for _, p, _, _ in out["sent"]) < 1024


# --- (c) through a real broker, across a reboot ----------------------------------------------------

class Listener:
    """A paho subscriber that keeps every message (topic, payload, retain flag)."""

    def __init__(self, url, *filters):
        import paho.mqtt.client as mqtt
        self.msgs = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        u = parse_broker(url)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe([(f, 1) for f in filters])
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        c.connect(u.host, u.port)
        c.loop_start()
        self.c = c
        if not self._subscribed.wait(5):
            raise AssertionError("no SUBACK from %s" % u.safe)

    def _on_message(self, client, userdata, m):
        with self._lock:
            self.msgs.append((m.topic, m.payload.decode(), bool(m.retain)))

    def take(self, pred, n, timeout=5.0, settle=0.3):
        """Wait for `n` messages matching pred, then `settle` s more for extras; return them all."""
        sel = lambda: [m for m in list(self.msgs) if pred(m)]  # noqa: E731
        servers.wait_until(lambda: len(sel()) >= n, timeout, what="%d messages" % n)
        import time
        time.sleep(settle)
        return sel()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _boot(url, data_dir, s, seconds, profiles):
    times = [[int(t * 1e6) for t in p.pulse_times(ch["imp_per_kwh"], seconds + 60, 0.3)]
             for p, ch in zip(profiles, s["channels"])]
    board = VirtualBoard([PulseSource(t) for t in times],
                         lambda cid, will: PahoClient(parse_broker(url), cid, will), data_dir, START)
    app = make_app(board, s)
    _drive(board, app, seconds)
    return board, app


def _stop(app):
    if app.link.client is not None:
        app.link.client.close()


@pytest.mark.servers
def test_real_broker_keeps_4_retained_configs_and_a_reboot_republishes_the_same_4_no_duplicates(mosquitto, tmp_path):
    s = ha_settings(CHANNELS=TWO)
    profiles = [Profile.constant(2400), Profile.constant(900)]
    live = Listener(mosquitto.url, "homeassistant/#", s["mqtt_topic"])
    try:
        board, app = _boot(mosquitto.url, str(tmp_path), s, 45, profiles)
        _stop(app)
        assert app.link.published >= 8
        first = Listener(mosquitto.url, "homeassistant/#")
        retained1 = first.take(lambda m: m[2], 4)
        first.close()
        assert len(retained1) == 4
        uids1 = sorted(json.loads(p)["unique_id"] for _, p, _ in retained1)

        # Home Assistant reads each channel's power from the seed's JSON through the template.
        readings = [p for t, p, _ in live.msgs if t == s["mqtt_topic"]]
        cfgs = {t: json.loads(p) for t, p, _ in retained1}
        power_cfgs = [c for c in cfgs.values() if c["device_class"] == "power"]
        for payload in readings:
            m = json.loads(payload)
            values = [ha_render(c["value_template"], payload) for c in power_cfgs]
            assert sorted(values, key=len)[-1] == "%.1f" % m["power"]
            assert sum(1 for v in values if v) == 1
        late = [json.loads(p) for p in readings[-4:]]
        assert {m["measurement"]: round(m["power"] / 100) for m in late} == {"house": 24, "heatpump": 9}

        # Reboot: a new App on the same data dir, a new connection.
        live.msgs.clear()
        board2, app2 = _boot(mosquitto.url, str(tmp_path), s, 15, profiles)
        _stop(app2)
        republished = live.take(lambda m: m[0].startswith("homeassistant/"), 4)
        assert sorted((t, p) for t, p, _ in republished) == sorted((t, p) for t, p, _ in retained1)
        second = Listener(mosquitto.url, "homeassistant/#")
        retained2 = second.take(lambda m: m[2], 4)
        second.close()
        assert sorted(t for t, _, _ in retained2) == sorted(t for t, _, _ in retained1)
        assert sorted(json.loads(p)["unique_id"] for _, p, _ in retained2) == uids1
        assert len(set(uids1)) == 4
    finally:
        live.close()


@pytest.mark.servers
def test_availability_topic_in_the_configs_holds_retained_online_and_the_will_turns_it_offline(mosquitto, tmp_path):
    s = ha_settings()
    board, app = _boot(mosquitto.url, str(tmp_path), s, 12, [Profile.constant(500)])
    avail = all_configs(s)[0][1]["availability_topic"]
    probe = Listener(mosquitto.url, avail)
    assert probe.take(lambda m: m[2], 1)[-1][:2] == (avail, "online")
    # A dropped connection (no DISCONNECT): the broker publishes the will.
    paho = app.link.client.c
    paho.loop_stop()
    paho.socket().close()
    assert probe.take(lambda m: m[1] == "offline", 1, timeout=10)[-1][:2] == (avail, "offline")
    probe.close()
