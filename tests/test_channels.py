"""Several meters on one board (CHANNELS): every channel counted by its own
interrupt handler at once, each publishing its own seed-format message."""

from picopower.firmware import config, message
from picopower.loads import Profile
from picopower.virtual import settings_for
from tests.conftest import START, RecordedBoard as Board

THREE = [
    {"PIN": 22, "IMP_PER_KWH": 1000, "SERIESNAME": "house"},
    {"PIN": 21, "IMP_PER_KWH": 800, "SERIESNAME": "heatpump", "MAX_POWER_W": 12000},
    {"PIN": 20, "IMP_PER_KWH": 2000, "SERIESNAME": "solar", "PULSE_WIDTH_MIN_MS": 10, "PULSE_WIDTH_MAX_MS": 100},
]


def fired_before(times_us, unix_s):
    limit = (unix_s - START) * 1e6
    return sum(1 for t in times_us if t <= limit)


def test_three_channels_each_publish_their_own_message_with_power_within_1pct_and_exact_energy(tmp_path):
    watts = [2400.0, 1500.0, 600.0]
    profiles = [Profile.constant(w) for w in watts]
    times = [p.pulse_times(ch["IMP_PER_KWH"], 200, 0.37) for p, ch in zip(profiles, THREE)]
    run = Board(tmp_path, {"CHANNELS": THREE, "REPORT_INTERVAL_S": 10}, times,
                widths_us=[30000, 30000, 50000])
    run.until(180)
    series = run.by_series()
    assert sorted(series) == ["heatpump", "house", "solar"]
    counts = {k: len(v) for k, v in series.items()}
    assert len(set(counts.values())) == 1 and counts["house"] >= 17
    for i, (ch, w) in enumerate(zip(THREE, watts)):
        msgs = series[ch["SERIESNAME"]]
        assert [m["timestamp"] for m in msgs] == [int(START) + 10 * (k + 1) for k in range(len(msgs))]
        for m in msgs:
            assert set(m) == set(message.KEYS + message.EXTRA_KEYS)
            assert m["host"] == "pico-meter"
            assert m["pulses"] == fired_before(run.times_us[i], m["timestamp"])
            assert m["energy"] == round(m["pulses"] / ch["IMP_PER_KWH"], 6)
        for m in msgs[3:]:
            assert abs(m["power"] - w) / w < 0.01, (ch["SERIESNAME"], m)


def test_pulses_at_the_same_microsecond_on_all_three_inputs_are_all_counted(tmp_path):
    # 1 pulse per second on every input, all at the very same instants.
    same = [0.5 + k for k in range(120)]
    run = Board(tmp_path, {"CHANNELS": THREE}, [same, same, same], widths_us=[30000, 30000, 50000])
    run.until(125)
    last = {k: v[-1] for k, v in run.by_series().items()}
    assert {k: m["pulses"] for k, m in last.items()} == {"house": 120, "heatpump": 120, "solar": 120}
    # 1 pulse/s = 3600/imp kW on each meter.
    mid = {k: v[6]["power"] for k, v in run.by_series().items()}
    assert abs(mid["house"] - 3600) < 36 and abs(mid["heatpump"] - 4500) < 45 and abs(mid["solar"] - 1800) < 18
    assert sum(ch.lost for ch in run.app.channels) == 0


def test_each_channel_keeps_its_own_filter_short_pulses_on_solar_are_rejected_not_on_house(tmp_path):
    # 5 ms pulses: below solar's 10 ms minimum width, fine for house (no width filter).
    pulses = [0.25 + k for k in range(60)]
    run = Board(tmp_path, {"CHANNELS": THREE[:1] + THREE[2:]}, [pulses, pulses], widths_us=[5000, 5000])
    run.until(65)
    last = {k: v[-1]["pulses"] for k, v in run.by_series().items()}
    assert last == {"house": 60, "solar": 0}


def test_energy_totals_survive_a_reboot_per_channel_without_mixing(tmp_path):
    a = [0.5 + 0.5 * k for k in range(1400)]  # 2 pulses/s
    b = [0.7 + 2.0 * k for k in range(350)]   # 1 pulse per 2 s
    values = {"CHANNELS": THREE[:2], "PERSIST_INTERVAL_S": 60}
    run = Board(tmp_path, values, [a, b])
    run.until(300)
    saved = [ch.store.saved for ch in run.app.channels]
    assert [ch.total() for ch in run.app.channels] == [600, 150]
    # Saved every 60 s: at 240 s house had 480 pulses, heatpump 120.
    assert saved == [480, 120]
    # Power cut, then a new App on the same flash: each file holds its own channel's count.
    again = Board(tmp_path, values, [[0.5], [0.5]])
    assert [ch.store.base for ch in again.app.channels] == [480, 120]
    again.until(12)
    assert {m["measurement"]: m["pulses"] for m in again.messages} == {"house": 481, "heatpump": 121}


def test_without_channels_the_seeds_names_make_the_single_channel(tmp_path):
    values = {"SERIESNAME": "meter", "IMP_PER_KWH": 500, "PULSE_PIN": 15}
    s = settings_for(dict({"MQTT_TOPIC": "home/power"}, **values))
    assert len(s["channels"]) == 1
    ch = s["channels"][0]
    assert (ch["seriesname"], ch["name"], ch["imp_per_kwh"], ch["pin"]) == ("meter", "meter", 500, 15)
    times = Profile.constant(1200).pulse_times(500, 70, 0.5)
    run = Board(tmp_path, values, [times])
    run.until(62)
    assert {m["measurement"] for m in run.messages} == {"meter"}
    assert abs(run.messages[-1]["power"] - 1200) < 12


def test_channel_keys_left_out_take_the_top_level_values():
    s, errors, _ = config.check({"WIFI_SSID": "x", "MQTT_SERVER": "h", "MQTT_TOPIC": "t", "IMP_PER_KWH": 400,
                                 "PULSE_EDGE": "rising", "CHANNELS": [{"PIN": 3, "SERIESNAME": "a"},
                                                                      {"PIN": 4, "SERIESNAME": "b",
                                                                       "IMP_PER_KWH": 1000}]})
    assert errors == []
    assert [(c["imp_per_kwh"], c["edge"], c["pin"]) for c in s["channels"]] == [(400, "rising", 3),
                                                                                (1000, "rising", 4)]


def test_two_channels_can_never_publish_messages_that_cannot_be_told_apart(tmp_path):
    chans = [{"PIN": 22, "SERIESNAME": "house", "NAME": "a"}, {"PIN": 21, "SERIESNAME": "house", "NAME": "b"}]
    values = {"WIFI_SSID": "x", "MQTT_SERVER": "h", "MQTT_TOPIC": "t", "CHANNELS": chans}
    _, errors, _ = config.check(values)
    if errors:
        assert any("SERIESNAME" in e for e in errors)
        return
    run = Board(tmp_path, {"CHANNELS": chans}, [[0.5 + k for k in range(30)], [0.5 + 2 * k for k in range(15)]])
    run.until(25)
    # Telegraf/InfluxDB key a point by measurement + host tag + timestamp; Home Assistant's
    # templates select on measurement + host. Two channels must differ in one of them.
    keys = [(m["measurement"], m["host"], m["timestamp"]) for m in run.messages]
    assert len(keys) == len(set(keys))
