"""Revisions: published windows corrected to the meter's truth once the next pulses land."""

import json
import sqlite3

import pytest

from picopower import firmware
from picopower.firmware import config, load, power
from picopower.lineproto import Point
from picopower.loads import Profile
from picopower.sinks import SqliteSink
from picopower.virtual import PulseSource, RecordingClient, VirtualBoard, make_app, run_until, settings_for

from tests import mpy

revisions = load("revisions")


def run(profile, imp, seconds, interval=10, slots=None):
    """Live and stored (revised) value and truth of each window, as the App feeds them."""
    times = [int(round(t * 1e6)) for t in profile.pulse_times(imp, seconds)]
    est = power.PowerEstimator(imp, 300)
    est.start(0)
    revised = {}
    rev = revisions.Revisions(imp, slots or revisions.slots_for(interval),
                              lambda end, watts, total: revised.__setitem__(end, (watts, total)))
    rev.start(0)
    rows = []
    peak = 0
    i = 0
    for k in range(1, int(seconds // interval) + 1):
        t1 = k * interval * 1000000
        while i < len(times) and times[i] <= t1:
            est.pulse(times[i])
            rev.pulse(times[i])
            i += 1
        live = est.close(t1)
        rev.closed(t1, live, k)
        peak = max(peak, rev.pending)
        rows.append((t1 // 1000, live, profile.mean_power(t1 / 1e6 - interval, t1 / 1e6)))
    return rows, revised, peak, times


def test_a_steady_500w_load_queues_no_revision_in_an_hour():
    _, revised, _, _ = run(Profile.constant(500), 1000, 3600)
    assert revised == {}


def test_5w_standby_after_a_kettle_is_stored_within_1_w_where_live_read_up_to_350_w():
    profile = Profile([(0, 2000), (300, 5), (4000, 5)])
    rows, revised, _, times = run(profile, 1000, 4000)
    # Final: windows before the second newest pulse (the step model needs the pulse after next).
    after = [(end, live, truth) for end, live, truth in rows if 310000 <= end and end * 1000 < times[-2]]
    assert max(live for _, live, _ in after) > 300  # the live reading had to guess
    for end, live, truth in after:
        stored = revised.get(end, (live, 0))[0]
        assert abs(stored - truth) <= 1.0, (end, live, stored, truth)


def test_kettle_switch_on_and_off_windows_are_stored_within_1_percent_of_the_true_mean():
    profile = Profile([(0, 60), (601.3, 2260), (781.7, 60), (1800, 60)])
    rows, revised, _, _ = run(profile, 1000, 1800)
    for end, live, truth in rows[13:-12]:  # from the second pulse (60 s) on
        stored = revised.get(end, (live, 0))[0]
        assert abs(stored - truth) <= max(1.0, 0.01 * truth), (end, live, stored, truth)
    assert len(revised) >= 4


def test_a_revision_keeps_the_live_readings_pulse_total_so_the_energy_field_is_unchanged():
    profile = Profile([(0, 2000), (300, 5), (4000, 5)])
    rows, revised, _, _ = run(profile, 1000, 4000)
    for end, (_, total) in revised.items():
        assert total == end // 10000  # run() passes the window number as the total


def test_pending_windows_stay_within_151_slots_1812_bytes_on_a_5w_standby_at_1000_imp():
    slots = revisions.slots_for(10)
    assert slots == 151
    _, _, peak, _ = run(Profile.constant(5), 1000, 4 * 3600)
    assert peak <= slots
    r = revisions.Revisions(1000, slots, lambda *a: None)
    assert sum(a.itemsize * len(a) for a in (r._end, r._watts, r._total)) == 1812


def test_a_revision_needs_more_than_1_w_or_1_percent():
    assert not revisions.differs(0.9, 0.0)
    assert revisions.differs(1.2, 0.0)
    assert not revisions.differs(2000.0, 1981.0)
    assert revisions.differs(2000.0, 1979.0)


# --- settings ---------------------------------------------------------------------------------

BASE = {"WIFI_SSID": "net", "MQTT_SERVER": "192.168.1.10", "MQTT_TOPIC": "home/power"}


def test_revision_topic_defaults_to_the_data_topic_plus_revised():
    s, errors, _ = config.check(BASE)
    assert errors == [] and s["revision_topic"] == "home/power/revised"


def test_revision_topic_equal_to_the_data_topic_is_refused_in_one_line():
    _, errors, _ = config.check(dict(BASE, REVISION_TOPIC="home/power"))
    assert len(errors) == 1 and errors[0].startswith("REVISION_TOPIC must differ from MQTT_TOPIC")


# --- the App on a virtual board -----------------------------------------------------------------

def board_run(profile, seconds, extra=None, imp=1000):
    values = {"MQTT_TOPIC": "home/power", "IMP_PER_KWH": imp, "HOSTNAME": "kitchen", "SERIESNAME": "house"}
    values.update(extra or {})
    settings = settings_for(values)
    sent = []
    times = [int(round(t * 1e6)) for t in profile.pulse_times(imp, seconds)]
    import tempfile
    with tempfile.TemporaryDirectory() as data:
        board = VirtualBoard([PulseSource(times)], lambda cid, will: RecordingClient(
            lambda topic, payload, retain: sent.append((topic, payload))), data, 1767225600)
        app = make_app(board, settings)
        run_until(app, board, seconds * 1000000)
    return sent


def test_revisions_go_only_to_home_power_revised_after_their_live_reading_with_its_timestamp_and_energy():
    sent = board_run(Profile([(0, 2000), (300, 5), (3000, 5)]), 3000)
    live = {}
    revised = 0
    for topic, payload in sent:
        if topic == "home/power":
            m = json.loads(payload)
            assert m["timestamp"] not in live
            live[m["timestamp"]] = m
        elif topic == "home/power/revised":
            m = json.loads(payload)
            first = live[m["timestamp"]]  # the live reading came first
            assert {k: m[k] for k in ("measurement", "host", "energy", "pulses")} == \
                {k: first[k] for k in ("measurement", "host", "energy", "pulses")}
            assert m["power"] != first["power"]
            revised += 1
    assert revised >= 20


def test_an_empty_revision_topic_publishes_no_revision():
    sent = board_run(Profile([(0, 2000), (300, 5), (3000, 5)]), 3000, {"REVISION_TOPIC": ""})
    assert any(t == "home/power" for t, _ in sent)
    assert not any(t.endswith("/revised") for t, _ in sent)


# --- SQLite ----------------------------------------------------------------------------------------

def test_a_revision_overwrites_the_live_row_in_sqlite_one_row_per_reading(tmp_path):
    sink = SqliteSink(str(tmp_path / "p.sqlite"))
    sink.write([Point("house", "kitchen", 1767225610, {"power": 349.5, "energy": 1.0, "pulses": 1000.0})])
    sink.write([Point("house", "kitchen", 1767225610, {"power": 5.0, "energy": 1.0, "pulses": 1000.0})])
    sink.close()
    rows = sqlite3.connect(str(tmp_path / "p.sqlite")).execute("SELECT power, energy FROM points").fetchall()
    assert rows == [(5.0, 1.0)]


def test_an_old_sqlite_table_without_a_key_is_migrated_keeping_the_last_of_3_duplicates(tmp_path):
    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE points (measurement TEXT, host TEXT, time REAL, power REAL, energy REAL, pulses REAL)")
    for p in (100.0, 200.0, 300.0):
        db.execute("INSERT INTO points VALUES ('house', 'kitchen', 1767225610, ?, 1.0, 1000)", (p,))
    db.execute("INSERT INTO points VALUES ('house', 'kitchen', 1767225620, 50.0, 1.0, 1000)")
    db.commit()
    db.close()
    sink = SqliteSink(path)
    sink.check()
    sink.write([Point("house", "kitchen", 1767225620, {"power": 7.0, "energy": 1.0, "pulses": 1000.0})])
    sink.close()
    rows = sqlite3.connect(path).execute("SELECT time, power FROM points ORDER BY time").fetchall()
    assert rows == [(1767225610.0, 300.0), (1767225620.0, 7.0)]


# --- under MicroPython --------------------------------------------------------------------------

# Pulses of a 2 kW kettle for 300 s, then a 5 W standby (one pulse every 720 s at
# 1000 imp/kWh) for the rest of an hour, through the estimator and the revisions,
# a window every 10 s. The same snippet runs on CPython and in the guest.
HOUR_OF_REVISIONS = """
import power, revisions
times = [k * 1800000 for k in range(1, 167)]
t = 300000000 + 720000000 - (300000000 - times[-1]) * 400
while t < 3600000000:
    times.append(t)
    t += 720000000
est = power.PowerEstimator(1000, 300)
est.start(0)
got = []
rev = revisions.Revisions(1000, revisions.slots_for(10), lambda e, w, t: got.append((e, w)))
rev.start(0)
i = 0
peak = 0
for k in range(1, 361):
    t1 = k * 10000000
    while i < len(times) and times[i] <= t1:
        est.pulse(times[i])
        rev.pulse(times[i])
        i += 1
    rev.closed(t1, est.close(t1), k)
    if rev.pending > peak:
        peak = rev.pending
"""


@pytest.mark.micropython
def test_revisions_under_micropython_match_cpython_over_an_hour_of_kettle_then_5w_standby_within_151_slots():
    mine = firmware.run(HOUR_OF_REVISIONS)["got"]
    out = mpy.run_json(HOUR_OF_REVISIONS + """
import json
print(json.dumps({'revised': got, 'peak': peak, 'slots': rev.slots}))
""")[0]
    assert len(mine) >= 60
    assert len(out["revised"]) == len(mine)
    for (end, watts), (e2, w2) in zip(out["revised"], mine):
        assert end == e2 and abs(watts - w2) <= 1e-3 * max(1.0, w2)
    # The pending windows live in the three preallocated arrays. The wasm port
    # traps in a garbage collection after big-integer arithmetic (µs past
    # 2**30), so the heap itself is not measured here and the run is kept to
    # an hour, short of the first automatic collection.
    assert out["slots"] == 151 and out["peak"] <= 151


# --- replay and monitor ------------------------------------------------------------------------

def _replay_lines(tmp_path, *flags):
    from picopower import cli
    times = [1767225600 + t for t in Profile([(0, 2000), (300, 5), (3000, 5)]).pulse_times(1000, 3000)]
    path = tmp_path / "pulses.txt"
    path.write_text("".join("%.6f\n" % t for t in times))
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["replay", str(path), "--imp-per-kwh", "1000", *flags]) == 0
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_replay_revisions_adds_only_revisions_first_line_per_timestamp_live_last_stored(tmp_path):
    plain = _replay_lines(tmp_path)
    both = _replay_lines(tmp_path, "--revisions")
    assert len({m["timestamp"] for m in plain}) == len(plain)  # without the flag: one line per reading
    first = {}
    last = {}
    for m in both:
        first.setdefault(m["timestamp"], m)
        last[m["timestamp"]] = m
    assert [first[m["timestamp"]] for m in plain] == plain
    assert len(both) - len(plain) >= 20
    # Stored after the switch-off: the 5 W standby, where live decayed from 350 W to 0.
    stored = [last[t]["power"] for t in sorted(last) if 1767225600 + 320 <= t <= 1767225600 + 1500]
    assert max(stored) < 6.5 and min(stored) > 4.0, stored


def test_monitor_sparkline_takes_a_revision_and_keeps_the_live_watts():
    from picopower.monitor import Meters
    from picopower.firmware import message
    m = Meters()
    t0 = 1_700_000_000
    m.handle("home/power", message.reading(349.5, t0, "power", "kitchen", 1000, 1000), now=t0)
    m.handle("home/power", message.reading(73.3, t0 + 10, "power", "kitchen", 1000, 1000), now=t0 + 10)
    m.handle("home/power/revised", message.reading(5.0, t0, "power", "kitchen", 1000, 1000), now=t0 + 11)
    (meter, _), = m.rows()
    assert list(meter.history) == [(t0, 5.0), (t0 + 10, 73.3)]
    assert meter.watts == 73.3 and meter.count == 2 and meter.revised == 1


def test_a_revision_keeps_its_live_readings_timestamp_across_a_forward_ntp_correction():
    import tempfile
    profile = Profile([(0, 2000), (300, 5), (3000, 5)])
    settings = settings_for({"MQTT_TOPIC": "home/power", "NTP_INTERVAL_S": 60})
    sent = []
    times = [int(round(t * 1e6)) for t in profile.pulse_times(1000, 3000)]
    with tempfile.TemporaryDirectory() as data:
        board = VirtualBoard([PulseSource(times)], lambda cid, will: RecordingClient(
            lambda topic, payload, retain: sent.append((topic, payload))), data, 1767225600)
        # A crystal 1.5 % slow: each minute's NTP answer is 900 ms ahead of the board's clock.
        board.ntp_unix_ms = lambda host: board.unix_ms() + board.us * 15 // 1000000
        app = make_app(board, settings)
        run_until(app, board, 3000 * 1000000)
    live = {json.loads(p)["timestamp"] for t, p in sent if t == "home/power"}
    revised = [json.loads(p)["timestamp"] for t, p in sent if t == "home/power/revised"]
    assert revised and all(ts in live for ts in revised)
