"""The power estimator on known load profiles."""

import pytest

from picopower.loads import Profile
from picopower.firmware import power

from bench import estimators


def windows(profile, imp, seconds, interval=10, timeout=300):
    """(t1, estimate, truth) for each report window."""
    times = [int(t * 1e6) for t in profile.pulse_times(imp, seconds)]
    est = power.PowerEstimator(imp, timeout)
    est.start(0)
    out = []
    i = 0
    for k in range(1, int(seconds // interval) + 1):
        t1 = k * interval * 1000000
        while i < len(times) and times[i] <= t1:
            est.pulse(times[i])
            i += 1
        out.append((t1 / 1e6, est.close(t1), profile.mean_power(t1 / 1e6 - interval, t1 / 1e6), est.last))
    return out


def test_steady_2kw_load_is_reported_within_0_1_percent():
    rows = windows(Profile.constant(2000), 1000, 600)
    assert all(abs(p - 2000) < 2.0 for _, p, _, _ in rows[1:])


def test_standby_30w_at_1000_imp_reads_30w_between_pulses_two_minutes_apart():
    rows = windows(Profile.constant(30), 1000, 1200)
    # Pulses are 120 s apart; every window after the second pulse reads 30 W.
    assert all(abs(p - 30) < 0.05 for t, p, _, _ in rows if t > 200)


def test_ev_charging_11kw_at_10000_imp_is_reported_within_0_1_percent():
    rows = windows(Profile.constant(11000), 10000, 300)
    assert all(abs(p - 11000) < 11 for _, p, _, _ in rows[1:])


def test_kettle_switch_off_drops_power_below_5pct_within_five_reports():
    # The pulse that was under way at switch-off completes 13 s later at
    # standby power, so the meter itself says "243 W over 14.8 s": holding
    # that (ESPHome's method) shows 243 W for two minutes, until the next
    # standby pulse. The firmware's decay is below 110 W by the 5th report.
    profile = Profile([(0, 2200), (305, 30)])
    rows = windows(profile, 1000, 600)
    after = [p for t, p, _, _ in rows if t > 305]
    assert after[0] < 2200  # the window holding the switch-off is partly kettle
    assert after[4] < 0.05 * 2200
    assert max(after[6:12]) < 30 * 1.05


def test_power_never_exceeds_one_pulse_over_time_since_last_pulse_when_no_pulse_arrives():
    profile = Profile([(0, 3000), (100, 0)])
    rows = windows(profile, 1000, 900, timeout=3600)
    e = 3.6e6 / 1000
    checked = 0
    for t1, p, _, last in rows:
        if t1 > 110:
            bound = e / (t1 - last / 1e6)
            assert p <= bound + 1e-9
            checked += 1
    assert checked > 70


def test_power_is_zero_after_the_timeout_without_pulses():
    profile = Profile([(0, 500), (100, 0)])
    rows = windows(profile, 1000, 800, timeout=120)
    assert all(p == 0.0 for t, p, _, _ in rows if t >= 100 + 120 + 10)


def test_live_is_within_0_2x_and_stored_within_0_02x_of_esphome_never_worse_on_any_trace(capsys):
    assert estimators.main([]) == 0
    out = capsys.readouterr().out
    assert "stored worse than live on: none" in out
    assert "live worse than an ESPHome mode on: none" in out


def test_8w_standby_pulsing_every_450s_reads_8w_between_its_pulses_not_0_after_the_300s_timeout():
    rows = windows(Profile.constant(8), 1000, 3600)
    assert all(abs(p - 8.0) < 0.01 for t, p, _, _ in rows if t > 910)  # from the second pulse on


def test_a_slow_standby_switched_off_reads_0_once_its_pulse_is_10_percent_overdue():
    rows = windows(Profile([(0, 8), (2000, 0)]), 1000, 4000)
    last = max(l for _, _, _, l in rows if l) / 1e6  # 1575 s, 450 s after the one before
    assert all(p == 0.0 for t, p, _, _ in rows if t > last + 1.1 * 450)
    assert all(p > 7.0 for t, p, _, _ in rows if last + 10 <= t <= last + 450)


def test_first_report_after_a_2kw_switch_off_at_a_window_edge_reads_under_250w_not_350w():
    rows = windows(Profile([(0, 2000), (1800, 8), (4000, 8)]), 1000, 4000)
    (p,) = [p for t, p, _, _ in rows if t == 1810]
    assert p < 250
