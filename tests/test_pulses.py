"""Ghost-pulse filtering in the interrupt handler (CPython; see also the MicroPython tests)."""

from picopower.firmware import pulses


class Clock:
    def __init__(self):
        self.us = 0

    def __call__(self):
        return self.us & ((1 << 30) - 1)


class Pin:
    def __init__(self, level=1):
        self.level = level

    def value(self):
        return self.level


def test_min_gap_is_one_pulse_at_max_power_150ms_for_1000_imp_and_24kw():
    assert pulses.min_gap_us(1000, 24000) == 150000
    assert pulses.min_gap_us(10000, 24000) == 15000


def test_bounce_within_8ms_of_a_pulse_is_rejected_and_real_pulses_all_count():
    clock = Clock()
    cap = pulses.PulseCapture(pulses.min_gap_us(1000, 24000), clock=clock)
    for k in range(100):
        start = k * 1800000  # 2 kW
        for offset in (0, 300, 1500, 8000):
            clock.us = start + offset
            cap.handler(None)
    assert cap.count == 100
    assert cap.rejected == 300


def test_width_filter_rejects_a_0_5ms_flicker_and_accepts_30ms_led_pulses():
    clock = Clock()
    pin = Pin()
    cap = pulses.PulseCapture(150000, 10000, 120000, active_level=0, clock=clock)
    for k in range(50):
        t = k * 1000000
        for dt, level in ((0, 0), (30000, 1), (400000, 0), (400500, 1)):
            clock.us = t + dt
            pin.level = level
            cap.handler(pin)
    assert cap.count == 50
    assert cap.rejected == 50


def test_pulse_times_survive_tick_wraparound_at_2_to_the_30():
    clock = Clock()
    cap = pulses.PulseCapture(150000, clock=clock)
    clock.us = (1 << 30) - 100000
    cap.handler(None)
    clock.us = (1 << 30) + 100000  # 200 ms later, after the wrap
    cap.handler(None)
    assert cap.count == 2


def test_ring_overflow_keeps_the_count_exact_and_reports_lost_ticks():
    clock = Clock()
    cap = pulses.PulseCapture(0, size=8, clock=clock)
    for k in range(20):
        clock.us = k * 1000
        cap.handler(None)
    assert cap.count == 20
    assert cap.tick_of(11) is None
    assert cap.tick_of(12) == 12000


def _channel(tmp_path):
    """An App channel at 1000 imp/kWh on a virtual clock, its flash in tmp_path; (channel, clock, monotonic)."""
    from picopower.firmware import app, clock as clock_mod

    class Board:
        def __init__(self, clk):
            self.ticks_us = clk

        def data_path(self, name):
            return str(tmp_path / name)

    clk = Clock()
    spec = {"pin": 22, "pull": "up", "edge": "falling", "imp_per_kwh": 1000, "max_power_w": 24000,
            "pulse_width_min_ms": 0, "pulse_width_max_ms": 0, "seriesname": "power", "name": "power"}
    ch = app.Channel(0, spec, {"power_timeout_s": 300, "persist_interval_s": 600}, Board(clk), print)
    return ch, clk, clock_mod.Monotonic(clk)


def test_channel_total_and_estimator_keep_counting_past_2_to_the_30_pulses(tmp_path):
    ch, clk, mono = _channel(tmp_path)
    cap = ch.capture
    cap.count = pulses.TOP - 9  # as if 2^30 - 10 pulses were counted since boot
    ch.seen = pulses.TOP - 9
    ch.ingest(mono, mono.now_us())
    for k in range(1, 21):
        clk.us = k * 1800000
        cap.handler(None)
        ch.ingest(mono, mono.now_us())
    assert cap.count == 10  # the IRQ's own counter wrapped, as a small int
    assert ch.total() == (1 << 30) + 10
    assert ch.seen == (1 << 30) + 10
    assert ch.estimator.last == 20 * 1800000


def test_a_capture_with_a_720_s_minimum_gap_is_refused_as_longer_than_the_filter_keeps():
    import pytest
    with pytest.raises(ValueError, match="longer than the filter can keep"):
        pulses.PulseCapture(pulses.min_gap_us(1, 5000))


def test_a_channel_a_million_pulses_behind_its_capture_catches_up_feeding_at_most_4352(tmp_path):
    ch, clk, mono = _channel(tmp_path)
    fed = []
    pulse = ch.estimator.pulse
    ch.estimator.pulse = lambda t: (fed.append(t), pulse(t))
    ch.capture.count = 999980  # as if the estimator had not run for a million pulses
    for k in range(1, 21):
        clk.us = k * 200000
        ch.capture.handler(None)
    ch.ingest(mono, mono.now_us())
    assert ch.total() == 1000000 == ch.seen
    assert len(fed) == 4096 + ch.capture.size == 4352
    assert fed == sorted(fed) and fed[-1] == 20 * 200000
