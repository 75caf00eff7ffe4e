"""`picopower plot`: daily kWh from the energy counter, and the PNG from SQLite and InfluxDB."""

from datetime import date, datetime, timezone

import pytest
from PIL import Image

from picopower import cli, plot
from picopower.lineproto import Point
from picopower.sinks import SqliteSink

from picopower.firmware import message


def _day_series(start, hours, watts_of_hour, step=600, imp=1000, host="kitchen", with_energy=True):
    """Readings every `step` s whose energy counter is exact for the given power (as the firmware counts it)."""
    s = plot.Series(host)
    pulses = 5000.0
    for k in range(int(hours * 3600 / step) + 1):
        t = start + k * step
        w = watts_of_hour((max(t - step, start) - start) // 3600)  # the window's mean power
        if k:
            pulses += w * step / 3.6e6 * imp
        s.add(t, w, float(message.kwh_text(int(round(pulses)), imp)) if with_energy else None)
    return s


def test_daily_kwh_splits_a_reading_window_at_midnight_and_matches_the_exact_energy():
    start = datetime(2024, 3, 1, 22, 0, tzinfo=timezone.utc).timestamp()
    s = _day_series(start, 28, lambda h: 1000.0 if h < 14 else 250.0, step=900)
    days = plot.daily_kwh(s, timezone.utc)
    # 22:00-24:00 at 1 kW; next day 12 h at 1 kW then 12 h at 250 W; then 2 h at 250 W.
    assert list(days) == [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)]
    assert days[date(2024, 3, 1)] == pytest.approx(2.0, abs=0.002)
    assert days[date(2024, 3, 2)] == pytest.approx(12 + 3.0, abs=0.002)
    assert days[date(2024, 3, 3)] == pytest.approx(0.5, abs=0.002)


def test_daily_kwh_skips_a_counter_reset_and_falls_back_to_power_without_energy():
    start = datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp()
    s = _day_series(start, 10, lambda h: 600.0)
    s.energy[30:] = [e - s.energy[30] for e in s.energy[30:]]  # a wiped board starts again at 0
    assert sum(plot.daily_kwh(s, timezone.utc).values()) == pytest.approx(6.0 - 0.1, abs=0.002)
    seed_format = _day_series(start, 10, lambda h: 600.0, with_energy=False)
    assert plot.daily_kwh(seed_format, timezone.utc)[date(2024, 5, 1)] == pytest.approx(6.0)


def test_since_accepts_hours_days_and_all_and_rejects_the_rest():
    assert plot.parse_since("24h") == 86400 and plot.parse_since("7d") == 7 * 86400
    assert plot.parse_since("all") is None and plot.parse_since("90m") == 5400
    for bad in ("", "-3h", "soon", "nanh"):
        with pytest.raises(ValueError):
            plot.parse_since(bad)


def _local_midnight():
    return datetime(2024, 6, 3).timestamp()  # naive: this machine's local midnight


def _points(start):
    """Two days of two meters: kitchen 1 kW then 500 W, garage 200 W."""
    pts = []
    for host, fn in (("kitchen", lambda h: 1000.0 if h < 24 else 500.0), ("garage", lambda h: 200.0)):
        s = _day_series(start, 48, fn, host=host)
        pts += [Point("power", host, int(t), {"power": w, "energy": e, "pulses": e * 1000})
                for t, w, e in zip(s.t, s.power, s.energy)]
    return pts


def _daily_lines(out):
    return {tuple(ln.split()[:2]): float(ln.split()[2]) for ln in out.splitlines() if ln.endswith(" kWh")}


def _check_png_and_days(path, out):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (plot.WIDTH_PX, plot.HEIGHT_PX)
        assert len(im.convert("RGB").resize((120, 70)).getcolors(10000)) > 20  # a drawing, not a blank
    days = _daily_lines(out)
    assert days[("kitchen", "2024-06-03")] == pytest.approx(24.0, abs=0.002)
    assert days[("kitchen", "2024-06-04")] == pytest.approx(12.0, abs=0.002)
    assert days[("garage", "2024-06-03")] == pytest.approx(4.8, abs=0.002)
    assert len(days) == 4


def test_plot_from_the_bridges_sqlite_writes_a_1200x700_png_and_prints_kwh_per_day(tmp_path, capsys):
    db = tmp_path / "readings.sqlite"
    sink = SqliteSink(str(db))
    sink.write(_points(_local_midnight()))
    sink.close()
    png = tmp_path / "graph.png"
    assert cli.main(["plot", "--sqlite", str(db), "--since", "all", "--out", str(png)]) == 0
    _check_png_and_days(png, capsys.readouterr().out)


def test_plot_since_keeps_only_the_last_hours_before_the_newest_reading(tmp_path):
    db = tmp_path / "r.sqlite"
    sink = SqliteSink(str(db))
    sink.write(_points(_local_midnight()))
    sink.close()
    data = plot.load_sqlite(str(db), "power", plot.parse_since("6h"))
    assert sorted(data) == ["garage", "kitchen"]
    assert data["kitchen"].t[-1] - data["kitchen"].t[0] == 6 * 3600 and len(data["kitchen"]) == 37


@pytest.mark.servers
def test_plot_from_influxdb_gives_the_same_days_as_from_sqlite(influxdb, tmp_path, capsys):
    from picopower.lineproto import line
    influxdb.write([line(p, "s") for p in _points(_local_midnight())], influxdb.db)
    png = tmp_path / "influx.png"
    assert cli.main(["plot", "--influx", influxdb.url, "--db", influxdb.db, "--series", "power",
                     "--since", "all", "--out", str(png)]) == 0
    _check_png_and_days(png, capsys.readouterr().out)


def test_missing_sqlite_file_and_unreachable_influx_are_one_line_errors(tmp_path, capsys):
    assert cli.main(["plot", "--sqlite", str(tmp_path / "nope.sqlite")]) == 2
    assert "no such SQLite file" in capsys.readouterr().err
    assert cli.main(["plot", "--influx", "http://127.0.0.1:9", "--db", "telegraf", "--out",
                     str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("picopower plot: error: cannot reach InfluxDB at http://127.0.0.1:9")
    assert not (tmp_path / "x.png").exists()


# --- stored (revised) against live at standby ---------------------------------

T0 = 1767225600.0  # 2026-01-01: the board's clock refuses answers before 2024


def _standby_with_fridge(base_w, hours=6):
    """`base_w` standby; a 110 W fridge on for 20-24 min every ~1 h, switching between pulses."""
    from picopower.loads import Profile
    steps, t, k = [(T0, base_w)], T0 + 917.3, 0
    while t < T0 + hours * 3600:
        on, off = 1213.7 + 97 * (k % 3), 2411.9 + 131 * (k % 4)
        steps += [(t, base_w + 110.0), (t + on, base_w)]
        t, k = t + on + off, k + 1
    return Profile(steps)


def _replayed_into_sqlite(profile, path, imp=1000, hours=6):
    """What `picopower replay --revisions` prints, stored as the bridge stores it: every message
    upserted into `points` (the revised history) and, into `live`, each timestamp's first
    message (the reading as published live)."""
    import json
    from picopower.replay import replay
    times = profile.pulse_times(imp, T0 + hours * 3600)
    msgs = [json.loads(m) for m in replay(times, imp, 10, revisions=True)]
    seen, live = set(), []
    for m in msgs:
        if m["timestamp"] not in seen:
            seen.add(m["timestamp"])
            live.append(m)
    for table, batch in (("points", msgs), (plot.LIVE_TABLE, live)):
        sink = SqliteSink(str(path), table=table)
        sink.write([Point(m["measurement"], m["host"], m["timestamp"],
                          {"power": m["power"], "energy": m["energy"], "pulses": m["pulses"]}) for m in batch])
        sink.close()
    return times, len(msgs) - len(live)


def test_at_30_w_standby_stored_history_is_100x_closer_than_live_and_the_close_up_shows_them_50_w_apart(tmp_path):
    profile = _standby_with_fridge(30.0)
    db = tmp_path / "standby.sqlite"
    times, revisions = _replayed_into_sqlite(profile, db)
    stored = plot.load_sqlite(str(db), None, None)
    live = plot.load_sqlite(str(db), None, None, table=plot.LIVE_TABLE)
    s, lv = stored["picopower"], live["picopower"]
    assert s.t == lv.t and len(s) > 2000  # one stored row per live reading, every 10 s for ~6 h
    # Windows whose exact mean the meter can know: from the 2nd pulse on; the last 10 min are left
    # out because the replay ends one report after the last pulse, before revising the windows before it.
    scored = [k for k, t in enumerate(s.t) if times[1] <= t - 10 and t <= times[-1] - 600]
    truth = [profile.mean_power(s.t[k] - 10, s.t[k]) for k in scored]
    mae_live = sum(abs(lv.power[k] - w) for k, w in zip(scored, truth)) / len(scored)
    mae_stored = sum(abs(s.power[k] - w) for k, w in zip(scored, truth)) / len(scored)
    print("30 W standby + fridge, %d windows, %d revisions: mean |error| live %.3f W, stored %.6f W"
          % (len(scored), revisions, mae_live, mae_stored))
    assert mae_live > 1.0 and mae_stored * 100 <= mae_live  # measured: 1.904 W live, < 0.001 W stored
    # What the plot draws in its close-up: the quiet stretch revisions changed most.
    st = plot.quiet_stretch(stored, live)
    lp = dict(zip(st.live.t, st.live.power))
    at_standby = [abs(p - lp[t]) for t, p in zip(st.stored.t, st.stored.power) if abs(p - 30.0) < 0.5]
    print("close-up %s +%.0f min: largest |stored - live| %.1f W, %.1f W where stored is the 30 W standby"
          % (st.label, (st.t0 - T0) / 60, max(st.differences()), max(at_standby)))
    assert len(at_standby) > 60 and max(at_standby) >= 50  # measured: 99.3 W (live still near the fridge's 140 W)
    png = tmp_path / "standby.png"  # the same close-up, drawn
    assert cli.main(["plot", "--sqlite", str(db), "--since", "all", "--live", "--out", str(png)]) == 0
    with Image.open(png) as im:
        assert im.size == (plot.WIDTH_PX, plot.HEIGHT_PX)


def test_plot_live_on_a_bridge_file_without_live_readings_is_a_one_line_error(tmp_path, capsys):
    db = tmp_path / "bridge.sqlite"
    sink = SqliteSink(str(db))
    sink.write(_points(_local_midnight()))
    sink.close()
    assert cli.main(["plot", "--sqlite", str(db), "--live", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keeps no live readings (table live)" in err
    assert not (tmp_path / "x.png").exists()


def test_close_up_passes_over_a_2_hour_gap_in_the_readings_and_finds_the_one_revised_reading():
    stored, live = plot.Series("kitchen"), plot.Series("kitchen")
    for k in range(6 * 360):
        t = T0 + 10 * k
        if 3600 <= t - T0 < 3 * 3600:
            continue  # the board was offline and its queue was lost
        stored.add(t, 1000.0 if k < 120 else 30.0, None)
        live.add(t, 72.0 if k == 1500 else stored.power[-1], None)
    st = plot.quiet_stretch({"kitchen": stored}, {"kitchen": live})
    assert st.t0 < T0 + 1500 * 10 < st.t1 and max(st.differences()) == 42.0
