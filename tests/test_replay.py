"""`picopower replay`: the firmware's messages for a file of pulse times."""

import json
import subprocess
import sys

from picopower.loads import Profile

T0 = 1767225600.0  # 2026-01-01


def pulse_file(tmp_path, profile, imp, seconds):
    path = tmp_path / "pulses.txt"
    path.write_text("".join("%.6f\n" % (T0 + t) for t in profile.pulse_times(imp, seconds)))
    return path


def replay(*args):
    res = subprocess.run([sys.executable, "-m", "picopower", "replay", *map(str, args)],
                         capture_output=True, text=True, timeout=120)
    return res.returncode, [json.loads(line) for line in res.stdout.splitlines()], res.stderr


def test_one_hour_at_500w_gives_360_messages_of_500w_on_the_files_clock(tmp_path):
    path = pulse_file(tmp_path, Profile.constant(500), 1000, 3600)
    rc, msgs, err = replay(path, "--imp-per-kwh", 1000, "--interval", 10)
    assert rc == 0, err
    first_pulse = T0 + 3.6  # half a pulse of 7.2 s in
    assert len(msgs) == 360
    assert msgs[0]["timestamp"] == int(first_pulse + 10)
    assert [m["timestamp"] - msgs[0]["timestamp"] for m in msgs[:5]] == [0, 10, 20, 30, 40]
    assert all(abs(m["power"] - 500.0) <= 0.1 for m in msgs[1:])
    assert msgs[-1]["pulses"] == 500 and msgs[-1]["energy"] == 0.5


def test_kettle_trace_energy_field_matches_the_pulse_count_exactly(tmp_path):
    profile = Profile([(0, 60), (300, 2200), (480, 60)])
    times = profile.pulse_times(800, 900)
    path = pulse_file(tmp_path, profile, 800, 900)
    rc, msgs, err = replay(path, "--imp-per-kwh", 800, "--interval", 30, "--max-power", 11000)
    assert rc == 0, err
    assert msgs[-1]["pulses"] == len(times)
    assert msgs[-1]["energy"] == round(len(times) / 800, 6)
    peak = max(m["power"] for m in msgs)
    assert 2000 < peak < 2300


def test_host_and_series_flags_name_the_messages(tmp_path):
    path = pulse_file(tmp_path, Profile.constant(1000), 1000, 60)
    rc, msgs, _ = replay(path, "--imp-per-kwh", 1000, "--host", "garage", "--series", "ev")
    assert rc == 0
    assert {(m["host"], m["measurement"]) for m in msgs} == {("garage", "ev")}


def test_a_garbage_line_is_one_line_error_naming_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("%f\n%f\nhello\n" % (T0, T0 + 1))
    rc, msgs, err = replay(path, "--imp-per-kwh", 1000)
    assert rc == 2 and msgs == []
    assert err.strip().count("\n") == 0
    assert "bad.txt:3" in err and "Traceback" not in err


def test_a_bad_meter_constant_is_rejected_by_the_firmwares_validator(tmp_path):
    path = pulse_file(tmp_path, Profile.constant(1000), 1000, 60)
    rc, _, err = replay(path, "--imp-per-kwh", 0)
    assert rc == 2
    assert "IMP_PER_KWH must be an integer 1-100000, got 0" in err


def _log(tmp_path, name, t0, times):
    path = tmp_path / name
    path.write_text("".join("%.6f\n" % (t0 + t) for t in times))
    return path


def test_logs_from_2019_and_from_time_0_give_the_2026_logs_messages_on_their_own_clocks(tmp_path):
    # The board trusts no clock before 2024 (junk NTP); a recorded log may be older.
    times = Profile([(0, 60), (300, 2200), (480, 60)]).pulse_times(1000, 900)
    runs = {}
    for name, t0 in (("2026", T0), ("2019", 1546300800.25), ("zero", 0.0)):
        rc, msgs, err = replay(_log(tmp_path, name, t0, times), "--imp-per-kwh", 1000)
        assert rc == 0, err
        runs[name] = (t0, msgs)
    base_t0, base = runs["2026"]
    assert len(base) == 84  # the first pulse at 30 s, then 84 windows to the last
    for name in ("2019", "zero"):
        t0, msgs = runs[name]
        assert [m["timestamp"] - int(t0) for m in msgs] == [m["timestamp"] - int(base_t0) for m in base]
        assert [(m["power"], m["pulses"]) for m in msgs] == [(m["power"], m["pulses"]) for m in base]


def test_revisions_settle_the_windows_between_a_logs_last_two_pulses_and_leave_the_live_lines_alone(tmp_path):
    # A kettle switched off at 700 s to a 30 W standby: the next (and last)
    # pulse comes at 813 s, so the board knows those windows' mean (31.7 W)
    # only at its horizon, after the log has ended.
    times = Profile([(0, 30), (600, 2000), (700, 30)]).pulse_times(1000, 900)
    path = _log(tmp_path, "kettle", T0, times)
    rc, live, err = replay(path, "--imp-per-kwh", 1000)
    assert rc == 0, err
    rc, both, err = replay(path, "--imp-per-kwh", 1000, "--revisions")
    assert rc == 0, err
    first = {}
    for m in both:
        first.setdefault(m["timestamp"], m)
    assert list(first.values()) == live
    settled = [m["power"] for m in both if m is not first[m["timestamp"]] and m["timestamp"] > T0 + 710]
    assert len(settled) >= 9
    assert all(abs(w - 31.7) <= 0.1 for w in settled)
