"""The wall clock: junk NTP answers never become the time, and a step back
never makes a channel's timestamps repeat or go backwards."""

import json

import pytest

from picopower.firmware import clock
from tests import mpy
from picopower.loads import Profile
from picopower.virtual import PulseSource, RecordingClient, VirtualBoard, make_app, run_until, settings_for

START = 1767225600  # 2026-01-01, unix s
JUNK = 2085978496  # what ntptime 0.2 makes of a transmit time of 0: 2036-02-07 06:28:16
HOUR_MS = 3600000


def synced(unix_s=START):
    w = clock.WallClock()
    w.set(unix_s * 1000, 0)
    return w


def test_a_first_answer_from_before_2024_or_after_2099_is_refused():
    w = clock.WallClock()
    for junk in (1577836800, 946684800, 4102444800, 6000000000):
        with pytest.raises(ValueError):
            w.set(junk * 1000, 0)
    assert not w.synced and w.refused == 4
    w.set(START * 1000, 0)
    assert w.synced and w.unix_s(10000) == START + 10


def test_a_first_answer_of_2036_02_07_repeated_is_never_taken_but_a_real_2040_confirmed_is():
    w = clock.WallClock()
    for m in (0, 1000, 15000, 60000):  # transmit time 0, as a broken server keeps sending
        with pytest.raises(ValueError, match="junk"):
            w.set(JUNK * 1000, m)
    assert not w.synced
    t2040 = 2209075200
    w2 = clock.WallClock()
    with pytest.raises(ValueError):
        w2.set(t2040 * 1000, 0)
    w2.set((t2040 + 12) * 1000, 12000)
    assert w2.synced and w2.unix_s(20000) == t2040 + 20


def test_a_2036_answer_an_hour_after_sync_is_refused_and_the_clock_keeps_its_time():
    w = synced()
    with pytest.raises(ValueError, match="second answer"):
        w.set(JUNK * 1000, HOUR_MS)
    assert w.unix_s(HOUR_MS + 10000) == START + 3610
    # The same junk a minute later does not confirm itself: a real clock moved on.
    with pytest.raises(ValueError):
        w.set(JUNK * 1000, HOUR_MS + 60000)
    assert w.unix_s(2 * HOUR_MS) == START + 7200


def test_an_answer_3_s_off_after_an_hour_is_taken_as_drift():
    w = synced()
    w.set((START + 3600 + 3) * 1000, HOUR_MS)
    assert w.unix_s(HOUR_MS) == START + 3603


def test_a_step_confirmed_by_a_second_answer_a_minute_later_is_taken():
    w = synced()
    with pytest.raises(ValueError):
        w.set((START + 3600 + 600) * 1000, HOUR_MS)
    w.set((START + 3660 + 600) * 1000, HOUR_MS + 60000)
    assert w.unix_s(HOUR_MS + 60000) == START + 3660 + 600


def test_a_confirmed_step_back_of_one_hour_is_slewed_over_two_hours_with_stamps_always_increasing():
    w = synced()
    for m in (HOUR_MS, HOUR_MS + 60000):
        try:
            w.set((START - 3600) * 1000 + m, m)
        except ValueError:
            pass
    stamps = [w.unix_s(m) for m in range(0, 5 * HOUR_MS, 10000)]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert min(b - a for a, b in zip(stamps, stamps[1:])) == 5  # half speed while slewing
    assert w.unix_s(4 * HOUR_MS) == START + 3 * 3600  # caught up: one hour behind the old time
    for m in range(0, 5 * HOUR_MS, 7919):  # the inverse, for readings stored with their unix time
        assert w.unix_ms(w.mono_ms(w.unix_ms(m))) == w.unix_ms(m)


def test_a_second_step_back_during_a_slew_keeps_every_stamp_already_given():
    w = synced()
    for target, m in ((-1800, HOUR_MS), (-1800, HOUR_MS + 60000), (-3600, HOUR_MS + 1800000),
                      (-3600, HOUR_MS + 1860000)):
        given = [w.unix_ms(t) for t in range(0, m + 1, 10000)]
        try:
            w.set((START + target) * 1000 + m, m)
        except ValueError:
            pass
        assert [w.unix_ms(t) for t in range(0, m + 1, 10000)] == given
    stamps = [w.unix_s(m) for m in range(0, 6 * HOUR_MS, 10000)]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


# --- the firmware on a virtual board -------------------------------------------------------------

def run_board(tmp_path, ntp, hours):
    """The firmware for `hours` at 10 s readings and hourly NTP; `ntp(true_unix_ms, n)` answers."""
    msgs = []

    def sink(topic, payload, retain):
        if topic == "home/power":
            msgs.append(json.loads(payload))
    profile = Profile.constant(1000)
    board = VirtualBoard([PulseSource([int(t * 1e6) for t in profile.pulse_times(1000, hours * 3600)])],
                         lambda cid, will: RecordingClient(sink), str(tmp_path), START)
    calls = []

    def answer(host):
        calls.append(board.us)
        return ntp(board.unix_ms(), len(calls))
    board.ntp_unix_ms = answer
    app = make_app(board, settings_for({"MQTT_TOPIC": "home/power", "REPORT_INTERVAL_S": 10,
                                        "NTP_INTERVAL_S": 3600}))
    run_until(app, board, hours * 3600 * 1000000)
    return msgs, app


def test_360_readings_after_one_junk_ntp_answer_keep_their_true_timestamps(tmp_path):
    msgs, app = run_board(tmp_path, lambda true_ms, n: JUNK * 1000 if n == 2 else true_ms, 3)
    stamps = [m["timestamp"] for m in msgs]
    after = [s for s in stamps if START + 3600 <= s < START + 7200]
    assert len(after) == 360
    assert max(stamps) <= START + 3 * 3600
    assert all(b - a == 10 for a, b in zip(stamps, stamps[1:]))
    assert app.wall.refused == 1


def test_an_ntp_step_back_of_one_hour_gives_no_duplicate_or_backward_timestamp(tmp_path):
    msgs, app = run_board(tmp_path, lambda true_ms, n: true_ms - (HOUR_MS if n >= 2 else 0), 5)
    stamps = [m["timestamp"] for m in msgs]
    assert len(stamps) > 1700
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert len(set(stamps)) == len(stamps)
    # Caught up by the end: the newest reading carries the corrected time.
    assert abs(stamps[-1] - (START + 5 * 3600 - 3600)) <= 20


SLEW = """
import json
from clock import WallClock
w = WallClock()
w.set(1767225600000, 0)
out = []
for unix_ms, m in ((2085978496000, 3600000), (1767225600000, 3600000), (1767225660000, 3660000)):
    try:
        w.set(unix_ms, m)
        out.append('taken')
    except ValueError:
        out.append('refused')
stamps = [w.unix_s(m) for m in range(0, 18000000, 10000)]
ok = all([b > a for a, b in zip(stamps, stamps[1:])])
print(json.dumps([out, ok, w.unix_s(14400000), w.refused]))
"""


@pytest.mark.micropython
def test_junk_refused_and_a_one_hour_step_back_slewed_the_same_on_micropython(capsys):
    from picopower import firmware
    firmware.run(SLEW)
    host = json.loads(capsys.readouterr().out)
    assert host == [["refused", "refused", "taken"], True, START + 3 * 3600, 2]
    assert mpy.run_json(SLEW)[0] == host
