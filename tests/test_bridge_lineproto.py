"""The bridge's parser and line-protocol writer: the seed's row, escaping, and properties."""

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import servers
from picopower.lineproto import MAX_NAME, Rejected, line, parse

from picopower.firmware import message  # noqa: E402

NOW = 1700000000


def parse_line(text):
    """A small InfluxDB 1.x line-protocol parser (measurement, {tags}, {fields: float}, time)."""
    assert "\n" not in text

    def scan(s, i, stops):
        out = []
        while i < len(s) and s[i] not in stops:
            if s[i] == "\\" and i + 1 < len(s):
                out.append(s[i + 1])
                i += 2
            else:
                out.append(s[i])
                i += 1
        return "".join(out), i

    meas, i = scan(text, 0, ", ")
    tags = {}
    while text[i] == ",":
        k, i = scan(text, i + 1, "=")
        assert text[i] == "="
        v, i = scan(text, i + 1, ", ")
        assert k not in tags
        tags[k] = v
    assert text[i] == " "
    fields = {}
    i += 1
    while True:
        k, i = scan(text, i, "=")
        assert text[i] == "="
        j = i + 1
        while j < len(text) and text[j] not in ", ":
            j += 1
        raw = text[i + 1:j]
        assert not raw.endswith("i") and raw not in ("true", "false") and '"' not in raw
        fields[k] = float(raw)
        i = j
        if text[i] == " ":
            break
        i += 1
    ts = text[i + 1:]
    assert ts.isdigit()
    return meas, tags, fields, int(ts)


def test_seed_message_becomes_exactly_the_seed_row_with_power_a_float_field():
    payload = message.reading(123.4, 1700000000, "power_usage", "pico-hall", 1234, 1000)
    p = parse(payload, now=NOW)
    assert line(p) == "power_usage,host=pico-hall power=123.4,energy=1.234,pulses=1234.0 1700000000"
    # the seed's four keys alone give the seed's row exactly
    seed = json.dumps({"power": 0.0, "timestamp": 1700000000, "measurement": "S", "host": "H"})
    assert line(parse(seed, now=NOW)) == "S,host=H power=0.0 1700000000"
    # an integer power is still a float field (no `i`)
    seed = json.dumps({"power": 100, "timestamp": 1700000000, "measurement": "S", "host": "H"})
    assert line(parse(seed, now=NOW)) == "S,host=H power=100.0 1700000000"


def test_fractional_timestamp_is_written_in_milliseconds():
    p = parse('{"power": 1.5, "timestamp": 1700000000.25, "measurement": "m", "host": "h"}', now=NOW)
    assert line(p) == "m,host=h power=1.5 1700000000250"


def test_commas_spaces_equals_and_quotes_in_names_are_escaped_into_one_tag_and_one_point():
    p = parse(json.dumps({"power": 5.0, "timestamp": NOW, "measurement": 'a,b c="d"',
                          "host": 'x,evil=1 power=9 1'}), now=NOW)
    text = line(p)
    assert text == 'a\\,b\\ c="d",host=x\\,evil\\=1\\ power\\=9\\ 1 power=5.0 1700000000'
    assert parse_line(text) == ('a,b c="d"', {"host": "x,evil=1 power=9 1"}, {"power": 5.0}, NOW)


@pytest.mark.parametrize("obj,reason", [
    ({"power": "123.4"}, "power is not a number"),
    ({"power": True}, "power is not a number"),
    ({"power": None}, "power is not a number"),
    ({"power": -0.1}, "power out of range"),
    ({"power": 1e6 + 1}, "power out of range"),
    ({"power": 10 ** 400}, "power is not finite"),
    ({"timestamp": "1700000000"}, "timestamp is not a number"),
    ({"timestamp": 1500000000}, "timestamp before 2020"),
    ({"timestamp": NOW + 86400 + 1}, "timestamp in the future"),
    ({"host": ""}, "host is empty"),
    ({"host": 7}, "host is not a string"),
    ({"host": "h" * (MAX_NAME + 1)}, "host is too long"),
    ({"host": "a\nb"}, "host has control characters"),
    ({"measurement": "a\\"}, "measurement has a backslash"),
    ({"measurement": "#x"}, "measurement starts with #"),
    ({"measurement": "\ud800"}, "measurement is not valid Unicode"),
    ({"energy": "1.0"}, "energy is not a number"),
    ({"pulses": float("inf")}, "pulses is not finite"),
])
def test_each_wrong_field_is_rejected_with_its_fixed_reason(obj, reason):
    msg = {"power": 1.0, "timestamp": NOW, "measurement": "m", "host": "h"}
    msg.update(obj)
    with pytest.raises(Rejected) as e:
        parse(json.dumps(msg), now=NOW)
    assert e.value.reason == reason


def test_broken_payloads_are_rejected_with_their_reason():
    cases = [(b"{", "invalid JSON"), (b"\xff\xfe\x00", "invalid JSON"), (b"[1]", "not a JSON object"),
             (b'"x"', "not a JSON object"), (b"[" * 100000, "payload too large"),
             (b"[" * 60000, "invalid JSON"),
             (b'{"power": NaN, "timestamp": 1700000000, "measurement": "m", "host": "h"}', "power is not finite"),
             (b'{"power": 1, "power": 2, "timestamp": 1700000000, "measurement": "m", "host": "h"}',
              "duplicate key"),
             (b'{"timestamp": 1700000000, "measurement": "m", "host": "h"}', "missing power")]
    for payload, reason in cases:
        with pytest.raises(Rejected) as e:
            parse(payload, now=NOW)
        assert e.value.reason == reason, payload[:40]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10)
names = st.text(min_size=0, max_size=70)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-10 ** 20, max_value=10 ** 20)
messages = st.fixed_dictionaries(
    {"power": st.floats(min_value=0, max_value=1e6) | numbers | json_values,
     "timestamp": st.integers(min_value=1577836800, max_value=NOW) | st.floats(1577836800, NOW) | json_values,
     "measurement": names | json_values, "host": names | json_values},
    optional={"energy": numbers | json_values, "pulses": numbers, "other": json_values})


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_no_bytes_crash_the_parser(payload):
    try:
        p = parse(payload, now=NOW)
    except Rejected:
        return
    assert "\n" not in line(p)


def _expected(msg):
    out = {"power": float(msg["power"])}
    for k in message.EXTRA_KEYS:
        if k in msg:
            out[k] = float(msg[k])
    return out


@settings(max_examples=500, deadline=None)
@given(messages)
def test_any_accepted_message_is_one_line_that_parses_back_to_its_values(msg):
    payload = json.dumps(msg, allow_nan=True)
    try:
        p = parse(payload, now=NOW)
    except Rejected:
        return
    text = line(p)
    meas, tags, fields, ts = parse_line(text)
    assert meas == msg["measurement"] and tags == {"host": msg["host"]}
    assert fields == _expected(msg) and list(fields)[0] == "power"
    if ts > 10 ** 12:
        assert ts == round(msg["timestamp"] * 1000)
    else:
        assert ts == msg["timestamp"]


@pytest.mark.servers
def test_accepted_messages_round_trip_through_a_real_influxd_exactly():
    """Hypothesis writes each accepted message to a real InfluxDB 1.6 and reads it back."""
    chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\") | st.sampled_from(',= "#\'')
    text = st.text(chars, min_size=1, max_size=64)
    valid = st.fixed_dictionaries(
        {"power": st.floats(min_value=0, max_value=1e6),
         "timestamp": st.integers(min_value=1577836800, max_value=NOW),
         "measurement": text, "host": text},
        optional={"energy": st.floats(allow_nan=False, allow_infinity=False), "pulses": st.integers(0, 2 ** 53)})
    with servers.InfluxDB() as influx:
        influx.create_database("rt")
        seen = {"accepted": 0}

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(valid)
        def check(msg):
            try:
                p = parse(json.dumps(msg), now=NOW)
            except Rejected:
                return
            seen["accepted"] += 1
            influx.query("DROP SERIES FROM /.*/", db="rt", method="POST")
            assert influx.write([line(p)], "rt") == 204
            q = 'SELECT * FROM "%s"' % msg["measurement"].replace("\\", "\\\\").replace('"', '\\"')
            rows = influx.points(q, "rt")
            assert len(rows) == 1, rows
            row = rows[0]
            assert row["_measurement"] == msg["measurement"] and row["host"] == msg["host"]
            assert row["time"] == msg["timestamp"]
            for k, v in _expected(msg).items():
                assert float(row[k]) == v, (k, row[k], v)  # JSON may print a big float as an int

        t0 = time.monotonic()
        check()
        assert seen["accepted"] >= 60
        assert time.monotonic() - t0 < 60
