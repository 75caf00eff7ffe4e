"""Property-based tests (hypothesis) of the firmware's settings validator,
board/lib/config.py check(): hostile input of any type for every setting and
for CHANNELS never crashes it, every error is one line naming the setting,
valid values come through with their type, invalid ones never reach the
settings. Strategies are derived from config.SETTINGS, so a new setting is
covered without editing this file.
"""

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st

from picopower.firmware import config, message, pulses  # noqa: E402
from picopower import lineproto  # noqa: E402

BASE = {"WIFI_SSID": "net", "MQTT_SERVER": "192.168.1.10", "MQTT_TOPIC": "home/power"}
NAMES = sorted(config.SETTINGS)
FAST = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

printable = st.characters(min_codepoint=32, blacklist_categories=("Cs", "Cc"))

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=8),
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4)),
    max_leaves=8)


def _text(max_size, min_size=0):
    return st.text(printable, min_size=min_size, max_size=max_size)


def valid(kind, arg):
    if kind == "int":
        return st.integers(*arg)
    if kind == "num":
        return st.integers(*arg) | st.floats(arg[0], arg[1], allow_nan=False)
    if kind == "bool":
        return st.booleans()
    if kind == "choice":
        return st.sampled_from(arg)
    if kind == "pin":
        return st.sampled_from(config.FREE_PINS)
    if kind in ("text", "secret"):
        return _text(min(arg, 40))
    if kind in ("name", "series"):
        return _text(min(arg, 40), 1).filter(lambda t: config.name_problem(t, kind == "series") is None)
    if kind == "ssid":
        return _text(32, 1).filter(lambda t: len(t.encode("utf-8", "surrogatepass")) <= 32)
    if kind == "wifi_pass":
        return (st.just("") | st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=8, max_size=63)
                | st.text("0123456789abcdefABCDEF", min_size=64, max_size=64))
    if kind == "watchdog":
        return st.just(0) | st.integers(*arg)
    if kind == "host":
        return st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True)
    if kind in ("topic", "topic_or_empty"):
        t = _text(50, 1).filter(lambda t: "+" not in t and "#" not in t)
        return (t | st.just("")) if kind == "topic_or_empty" else t
    raise AssertionError("no strategy for kind %r" % kind)


def invalid(kind, arg):
    not_str = st.none() | st.booleans() | st.integers() | st.floats() | st.lists(st.integers(), max_size=2)
    if kind == "int":
        lo, hi = arg
        return (st.integers(max_value=lo - 1) | st.integers(min_value=hi + 1) | st.booleans()
                | st.floats() | st.text(max_size=5) | st.none())
    if kind == "num":
        lo, hi = arg
        return (st.floats(max_value=lo, exclude_max=True) | st.floats(min_value=hi, exclude_min=True)
                | st.just(math.nan) | st.booleans() | st.text(max_size=5) | st.none())
    if kind == "bool":
        return st.integers() | st.text(max_size=5) | st.none() | st.floats()
    if kind == "choice":
        return st.text(max_size=8).filter(lambda t: t not in arg) | st.integers() | st.none()
    if kind == "pin":
        return st.sampled_from([23, 24, 25, 29, -1, 30, 100]) | st.booleans() | st.text(max_size=3)
    if kind in ("text", "secret"):
        return not_str | _text(arg + 20, arg + 1) | st.just("ab\ncd") | st.just("x\x00")
    if kind in ("name", "series"):
        bad = not_str | st.sampled_from(["", "   ", "a\\b", "a\x85b", "x\u2028y", "\ufeff"]) | _text(arg + 10, arg + 1)
        return (bad | st.just("#power")) if kind == "series" else bad
    if kind == "ssid":
        return not_str | st.just("") | st.just("\u00e9" * 17) | _text(60, 33) | st.just("a\nb")
    if kind == "wifi_pass":
        return (not_str | _text(7, 1).filter(lambda t: len(t.encode("utf-8", "surrogatepass")) < 8) | _text(80, 65)
                | st.just("g" * 64) | st.just("abcdefgh\n") | st.just("\u00e9" * 32))
    if kind == "watchdog":
        return st.integers(1, arg[0] - 1) | st.integers(min_value=arg[1] + 1) | st.integers(max_value=-1) | st.none()
    if kind == "host":
        return not_str | st.just("") | st.sampled_from(["a b", "h/x", "x@y", "a,b"])
    if kind in ("topic", "topic_or_empty"):
        bad = not_str | st.sampled_from(["a/#", "+/x", "a\nb", "x" * 201])
        return bad if kind == "topic_or_empty" else (bad | st.just(""))
    raise AssertionError("no strategy for kind %r" % kind)


def conforms(kind, arg, v):
    """A loose contract for a value that reached the settings (type and range)."""
    if kind == "int":
        return type(v) is int and arg[0] <= v <= arg[1]
    if kind == "num":
        return type(v) in (int, float) and arg[0] <= v <= arg[1]
    if kind == "bool":
        return type(v) is bool
    if kind == "choice":
        return v in arg
    if kind == "pin":
        return type(v) is int and v in config.FREE_PINS
    if kind in ("text", "secret"):
        return isinstance(v, str) and len(v) <= arg and all(ord(c) >= 32 and ord(c) != 127 for c in v)
    if kind in ("name", "series"):
        return config.name_problem(v, kind == "series") is None
    if kind == "ssid":
        return isinstance(v, str) and 1 <= len(v.encode("utf-8")) <= 32
    if kind == "wifi_pass":
        return isinstance(v, str) and (len(v) in (0, 64) or 8 <= len(v.encode("utf-8")) <= 63)
    if kind == "watchdog":
        return type(v) is int and (v == 0 or arg[0] <= v <= arg[1])
    if kind in ("host", "topic", "topic_or_empty"):
        return isinstance(v, str) and (v != "" or kind == "topic_or_empty")
    return True


def default(name):
    d = config.SETTINGS[name][0]
    return None if d == config.REQUIRED else d


# IMP_PER_KWH x MAX_POWER_W below this gives a minimum gap the filter cannot keep.
MIN_IMP_TIMES_W = -(-3600000000000 // pulses.MAX_GAP_US)
SETTABLE = [n for n in NAMES if config.SETTINGS[n][1] != "channels"]
CHANNEL_SETTINGS = {k: config.SETTINGS[top] for k, top in config.CHANNEL_KEYS.items() if top}

channel_dicts = st.dictionaries(
    st.sampled_from(sorted(config.CHANNEL_KEYS) + ["pin", "COLOUR", ""]) | st.integers(0, 3), anything, max_size=6)
hostile_channels = (anything | st.lists(channel_dicts, max_size=6) | st.tuples(channel_dicts)
                    | st.lists(st.one_of(channel_dicts, anything), max_size=3))


def _settings_named(error):
    return [n for n in NAMES if n in error]


def _has_control(x):
    if isinstance(x, str):
        return not x.isprintable()
    if isinstance(x, dict):
        return any(_has_control(k) or _has_control(v) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return any(_has_control(v) for v in x)
    return False


def _same(a, b):
    return type(a) is type(b) and a == b


# --- no crash, one line, names the setting ------------------------------------------------------

@FAST
@given(values=st.dictionaries(st.sampled_from(NAMES), anything, max_size=len(NAMES)),
       channels=st.none() | hostile_channels, drop=st.sets(st.sampled_from(sorted(BASE))))
def test_any_values_of_any_type_never_crash_and_each_error_names_its_setting(values, channels, drop):
    v = dict(BASE)
    for k in drop:
        v.pop(k)
    v.update(values)
    if channels is not None:
        v["CHANNELS"] = channels
    s, errors, warnings = config.check(v)
    assert isinstance(errors, list) and isinstance(warnings, list)
    for e in errors:
        assert isinstance(e, str) and e
        assert _settings_named(e), e
    # Whatever came in, a value in the settings honours its setting's contract.
    for name in SETTABLE:
        kind, arg = config.SETTINGS[name][1:]
        got = s[name.lower()]
        if got is not None and not _same(got, default(name)):
            assert conforms(kind, arg, got), (name, got)
    for ch in s["channels"]:
        for key, (_, kind, arg) in CHANNEL_SETTINGS.items():
            if key.lower() in ch:
                assert conforms(kind, arg, ch[key.lower()]), (key, ch)


@FAST
@given(values=st.dictionaries(st.sampled_from(NAMES),
                              anything.filter(lambda x: not isinstance(x, str) or x.isprintable()),
                              max_size=len(NAMES)),
       channels=st.none() | hostile_channels)
def test_errors_are_one_line_for_values_without_control_characters(values, channels):
    assume(not _has_control(channels))
    v = dict(BASE, **values)
    if channels is not None:
        v["CHANNELS"] = channels
    _, errors, _ = config.check(v)
    for e in errors:
        assert "\n" not in e and "\r" not in e, e


@FAST
@given(name=st.sampled_from(SETTABLE), junk=st.text(printable, max_size=5))
def test_a_rejected_value_with_a_newline_still_gives_a_one_line_error(name, junk):
    kind = config.SETTINGS[name][1]
    assume(kind not in ("text", "secret"))  # those say "control characters" without echoing
    _, errors, _ = config.check(dict(BASE, **{name: junk + "\nMQTT_PORT = 1"}))
    mine = [e for e in errors if e.startswith(name)]
    assert mine
    assert all("\n" not in e for e in mine), mine


# --- valid in, same value and type out --------------------------------------------------------------

@st.composite
def valid_values(draw):
    names = draw(st.sets(st.sampled_from(SETTABLE)))
    out = {n: draw(valid(*config.SETTINGS[n][1:])) for n in names}
    if not out.get("AVAILABILITY_TOPIC") and any(c in out.get("HOSTNAME", "") for c in "+#/"):
        # The default availability topic is built from HOSTNAME.
        out["AVAILABILITY_TOPIC"] = "picopower/status"
    if out.get("REVISION_TOPIC") and out["REVISION_TOPIC"] == out.get("MQTT_TOPIC", BASE["MQTT_TOPIC"]):
        out["REVISION_TOPIC"] = ""  # revisions may never share the live topic
    if out.get("MQTT_PASS") and not out.get("MQTT_USER"):
        out["MQTT_USER"] = "meter"
    imp = out.get("IMP_PER_KWH", default("IMP_PER_KWH"))
    if imp * out.get("MAX_POWER_W", default("MAX_POWER_W")) < MIN_IMP_TIMES_W:
        out["MAX_POWER_W"] = -(-MIN_IMP_TIMES_W // imp)  # the ghost filter's longest gap
        assume(out["MAX_POWER_W"] <= config.SETTINGS["MAX_POWER_W"][2][1])
    wmin = out.get("PULSE_WIDTH_MIN_MS", 0)
    wmax = out.get("PULSE_WIDTH_MAX_MS", 0)
    if wmin and (not wmax or wmin > wmax):
        out["PULSE_WIDTH_MAX_MS"] = max(wmin, wmax)
    return out


@st.composite
def valid_channels(draw):
    n = draw(st.integers(1, config.SETTINGS["CHANNELS"][2]))
    pins = draw(st.lists(st.sampled_from(config.FREE_PINS), min_size=n, max_size=n, unique=True))
    out = []
    for i in range(n):
        ch = {"PIN": pins[i], "SERIESNAME": "meter%d" % i}
        for key in draw(st.sets(st.sampled_from(["PULL", "EDGE", "IMP_PER_KWH", "MAX_POWER_W"]))):
            ch[key] = draw(valid(*CHANNEL_SETTINGS[key][1:]))
        if "IMP_PER_KWH" in ch or "MAX_POWER_W" in ch:
            ch["IMP_PER_KWH"] = imp = ch.get("IMP_PER_KWH", default("IMP_PER_KWH"))
            ch["MAX_POWER_W"] = max(ch.get("MAX_POWER_W", default("MAX_POWER_W")), -(-MIN_IMP_TIMES_W // imp))
            assume(ch["MAX_POWER_W"] <= config.SETTINGS["MAX_POWER_W"][2][1])
        out.append(ch)
    return out


@FAST
@given(values=valid_values(), channels=st.none() | valid_channels())
def test_valid_values_are_accepted_unchanged_with_their_type(values, channels):
    v = dict(BASE, **values)
    if channels is not None:
        v["CHANNELS"] = channels
    s, errors, _ = config.check(v)
    assert errors == []
    for name, value in v.items():
        if name == "CHANNELS":
            continue
        if name == "AVAILABILITY_TOPIC" and value == "":
            value = "picopower/%s/status" % s["hostname"]  # "" means the default topic
        assert _same(s[name.lower()], value), name
    for name in SETTABLE:
        kind, arg = config.SETTINGS[name][1:]
        if s[name.lower()] is not None:
            assert conforms(kind, arg, s[name.lower()]), name
    want = channels or [{}]
    assert len(s["channels"]) == len(want)
    for got, spec in zip(s["channels"], want):
        assert set(got) == {k.lower() for k in config.CHANNEL_KEYS}
        for key, (_, kind, arg) in CHANNEL_SETTINGS.items():
            expect = spec.get(key, v.get(config.CHANNEL_KEYS[key], default(config.CHANNEL_KEYS[key])))
            assert _same(got[key.lower()], expect), key
            assert conforms(kind, arg, got[key.lower()])


# --- invalid in: reported by name, never in the settings ------------------------------------------

@st.composite
def one_invalid(draw):
    name = draw(st.sampled_from(SETTABLE))
    return name, draw(invalid(*config.SETTINGS[name][1:]))


@FAST
@given(case=one_invalid())
def test_an_invalid_value_is_reported_by_name_and_the_setting_keeps_its_default(case):
    name, value = case
    s, errors, _ = config.check(dict(BASE, **{name: value}))
    assert [e for e in errors if e.startswith(name + " ")], (name, value, errors)
    assert _same(s[name.lower()], default(name)) or (name == "AVAILABILITY_TOPIC"
                                                     and s[name.lower()] == "picopower/picopower/status") or (
        name == "REVISION_TOPIC" and s[name.lower()] == s["mqtt_topic"] + "/revised")


@FAST
@given(key=st.sampled_from(sorted(CHANNEL_SETTINGS)), data=st.data())
def test_an_invalid_channel_value_is_reported_as_channels_i_key_and_left_out_of_that_channel(key, data):
    value = data.draw(invalid(*CHANNEL_SETTINGS[key][1:]))
    chans = [{"PIN": 22, "SERIESNAME": "a"}, {"PIN": 21, "SERIESNAME": "b"}]
    chans[1][key] = value
    s, errors, _ = config.check(dict(BASE, CHANNELS=chans))
    assert [e for e in errors if e.startswith("CHANNELS[1].%s " % key)], errors
    assert not any(_same(v, value) for v in s["channels"][1].values() if key.lower() != "name") \
        or key.lower() not in s["channels"][1]


@FAST
@given(name=st.sampled_from(["WIFI_PASS", "MQTT_PASS"]),
       secret=st.integers(min_value=10**7) | st.lists(st.text("abcdefgh", min_size=6, max_size=8), min_size=1,
                                                       max_size=1) | st.binary(min_size=6, max_size=8))
def test_a_rejected_password_is_never_echoed_in_the_error(name, secret):
    _, errors, _ = config.check(dict(BASE, MQTT_USER="meter", **{name: secret}))
    mine = [e for e in errors if e.startswith(name)]
    assert mine
    shown = secret[0] if isinstance(secret, list) else (secret.decode("latin-1") if isinstance(secret, bytes)
                                                         else str(secret))
    assert all(shown not in e and repr(secret) not in e for e in mine), mine


@FAST
@given(host=_text(20, 1).filter(lambda t: t.strip()))
def test_a_valid_hostname_always_gives_a_publishable_one_level_availability_topic(host):
    s, errors, _ = config.check(dict(BASE, HOSTNAME=host))
    if errors:
        assert all(e.startswith("HOSTNAME") for e in errors)
        return
    topic = s["availability_topic"]
    assert "+" not in topic and "#" not in topic
    assert topic.split("/")[:2] == ["picopower", host] and len(topic.split("/")) == 3


# --- one definition of a name: what the board accepts, the bridge stores --------------------------

any_text = st.text(st.characters(), max_size=70) | st.sampled_from(
    ["pico\\", "#power", "a\x85b", "x\u2028y", "\ufeffpico", "a,b c=d", "\"quoted\"", " lead", "\u00e9t\u00e9"])


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(host=any_text, series=any_text)
def test_any_hostname_and_seriesname_config_accepts_the_bridge_parses_and_writes_as_one_line(host, series):
    s, errors, _ = config.check(dict(BASE, HOSTNAME=host, SERIESNAME=series, AVAILABILITY_TOPIC="pico/status"))
    if errors:
        return
    payload = message.reading(1234.5, 1767225600, s["channels"][0]["seriesname"], s["hostname"], 10, 1000)
    point = lineproto.parse(payload, now=1767225600)
    assert (point.measurement, point.host) == (series, host)
    text = lineproto.line(point)
    assert "\n" not in text and "\r" not in text and not text.startswith("#")


@FAST
@given(host=any_text, series=any_text)
def test_a_name_the_bridge_refuses_is_refused_by_config_too(host, series):
    payload = message.reading(1.0, 1767225600, series, host, 1, 1000)
    try:
        lineproto.parse(payload, now=1767225600)
    except lineproto.Rejected:
        _, errors, _ = config.check(dict(BASE, HOSTNAME=host, SERIESNAME=series, AVAILABILITY_TOPIC="pico/status"))
        assert errors
