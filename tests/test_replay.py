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
