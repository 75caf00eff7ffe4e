"""Readings and energy through resets and power cuts, on the virtual Pico.

Each test runs the firmware on a meter at a known rate, restarts the board
the way the fault would (VirtualBoard.restart: RAM gone, flash kept, scratch
registers kept unless the power was cut) and counts: readings taken vs
published (each with its original timestamp, checked against the meter's own
pulse count at that instant), the energy total vs the meter's pulses, and
whether any published total went down. The broker is a recorder that keeps
retained messages across the board's restarts, as Mosquitto does.
"""

import json
import os

from picopower.firmware import health, spill
from picopower.virtual import (PowerCut, PulseSource, RecordingClient, VirtualBoard, make_app, run_until,
                               settings_for)

START = 1800000000  # unix s at virtual time 0
TOPIC = "home/power"


class Rig:
    def __init__(self, tmp_path, watts=3600, imp=1000, seconds=8 * 86400, values=None):
        self.settings = settings_for(dict({"MQTT_TOPIC": TOPIC, "HOSTNAME": "pico", "IMP_PER_KWH": imp},
                                          **(values or {})))
        self.period_us = 3600e9 / (watts * imp)
        n = int(seconds * 1e6 / self.period_us)
        self.pulse_us = [int((k + 0.5) * self.period_us) for k in range(n)]
        self.retained = {}
        self.messages = []
        self.status = []
        self.broker_up = True
        self.board = VirtualBoard([PulseSource(iter(self.pulse_us))], self._client, str(tmp_path), START)
        self.app = make_app(self.board, self.settings)
        self.taken = 0
        self.boots = 1

    def _client(self, cid, will):
        if not self.broker_up:
            raise OSError("ECONNREFUSED")
        return RecordingClient(self._sink, self.retained)

    def _sink(self, topic, payload, retain):
        if topic == TOPIC:
            self.messages.append(json.loads(payload))
        elif topic == health.status_topic(self.settings):
            self.status.append(json.loads(payload))

    def until(self, seconds, step_ms=500):
        run_until(self.app, self.board, seconds * 1e6, step_ms)

    def restart(self, kind):
        self.taken += self.app.readings
        self.board.restart(kind)
        self.app = make_app(self.board, self.settings)
        self.boots += 1

    def taken_so_far(self):
        return self.taken + self.app.readings

    def meter_pulses(self, t_s):
        """Pulses the meter gave up to `t_s` (virtual seconds)."""
        lo, hi = 0, len(self.pulse_us)
        t = t_s * 1e6
        while lo < hi:
            mid = (lo + hi) // 2
            if self.pulse_us[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def stamps(self):
        return [m["timestamp"] for m in self.messages]

    def lost(self):
        """Readings taken that were neither published nor are still queued."""
        return self.taken_so_far() - len(self.messages) - self.app.outbox.size

    def published_once_in_order(self):
        stamps = self.stamps()
        return stamps == sorted(set(stamps))

    def off_by(self, since=0, until=1 << 40):
        """Largest |published pulses - meter pulses at the reading's timestamp|, for the
        readings stamped in [since, until) virtual seconds."""
        return max([abs(m["pulses"] - self.meter_pulses(m["timestamp"] - START + 0.5)) for m in self.messages
                    if since <= m["timestamp"] - START < until] or [0])

    def never_decreases(self):
        p = [m["pulses"] for m in self.messages]
        return all(b >= a for a, b in zip(p, p[1:]))


def test_watchdog_reset_mid_outage_loses_no_reading_and_no_pulse(tmp_path):
    rig = Rig(tmp_path)
    rig.until(300)
    rig.board.wifi_up = False
    rig.until(1805)  # 25 min offline
    on_flash = rig.app.outbox.on_flash
    in_ram = rig.app.outbox.ram.size
    rig.restart("watchdog")
    rig.until(2400)
    rig.board.wifi_up = True
    rig.until(3000)
    assert on_flash == 151 and in_ram == 0  # offline, each reading goes to flash as it is taken
    assert rig.lost() == 0
    assert rig.status[-1]["dropped"] == 0 and rig.status[-1]["reset_cause"] == 1
    assert rig.published_once_in_order()
    assert rig.off_by() <= 1  # every reading carries the meter's count at its own timestamp
    assert rig.app.channels[0].total() == rig.meter_pulses(3000)  # exact: not one pulse lost
    assert rig.never_decreases()


def test_soft_reset_after_ctrl_c_loses_no_reading_and_no_pulse(tmp_path):
    rig = Rig(tmp_path)
    rig.until(200)
    rig.board.wifi_up = False
    rig.until(745)
    rig.app.shutdown()  # what App.run does on KeyboardInterrupt (Ctrl-C, then Ctrl-D)
    rig.restart("soft")
    rig.until(900)
    rig.board.wifi_up = True
    rig.until(1200)
    assert rig.lost() == 0
    assert rig.published_once_in_order()
    assert rig.off_by() <= 1
    assert rig.app.channels[0].total() == rig.meter_pulses(1200)
    assert rig.status[-1]["reset_cause"] == 2 and rig.status[-1]["resets"] == 1


def test_power_cut_while_queueing_loses_no_reading_and_at_most_10_s_of_pulses(tmp_path):
    rig = Rig(tmp_path)
    rig.until(300)
    rig.board.wifi_up = False
    rig.until(1234)
    published_before = max(m["pulses"] for m in rig.messages)
    rig.restart("power")
    rig.until(1300)
    rig.board.wifi_up = True
    rig.until(1800)
    assert rig.lost() == 0
    assert rig.published_once_in_order()
    assert rig.off_by(until=1234) <= 1
    assert rig.never_decreases() and rig.messages[-1]["pulses"] > published_before
    # Offline, each reading on flash carries the total: only the pulses after the last one are lost.
    missing = rig.meter_pulses(1800) - rig.app.channels[0].total()
    assert 0 <= missing <= 10
    assert rig.status[-1]["reset_cause"] == 0


def test_power_cut_while_online_never_publishes_a_lower_total(tmp_path):
    rig = Rig(tmp_path, values={"PERSIST_INTERVAL_S": 600})
    rig.until(895)  # last save at 600 s, 29 readings published since
    last = rig.messages[-1]["pulses"]
    saved = rig.app.channels[0].store.saved
    rig.restart("power")
    rig.until(1000)
    assert last - saved >= 290  # flash was that far behind what the broker had seen
    assert rig.never_decreases()
    # The broker's retained floor gave back what flash had not: only the cut's own seconds are lost.
    missing = rig.meter_pulses(1000) - rig.app.channels[0].total()
    assert 0 <= missing <= 10


def _spill_run(tmp_path, cut_at):
    rig = Rig(tmp_path, seconds=4000)
    rig.until(100)
    rig.board.wifi_up = False
    rig.until(600)  # 50 readings queued, most on flash
    rig.board.cut_at = cut_at
    try:
        rig.until(1000)
        return None
    except PowerCut:
        pass
    cut_s = rig.board.us / 1e6
    taken = rig.taken_so_far()
    rig.restart("power")
    rig.board.wifi_up = True
    rig.until(cut_s + 300)
    return rig, cut_s, taken


def test_power_cut_at_each_of_the_first_12_flash_operations_of_an_outage_loses_nothing_already_spilled(tmp_path):
    for n in range(1, 13):
        out = _spill_run(tmp_path / str(n), n)
        assert out is not None, "fewer than %d flash operations" % n
        rig, cut_s, taken = out
        assert rig.published_once_in_order(), n
        # Every reading older than 60 s at the cut was published, with its own time.
        assert set(range(START + 10, START + int(cut_s) - 60, 10)) <= set(rig.stamps()), n
        assert rig.never_decreases(), n
        missing = rig.meter_pulses(rig.board.us / 1e6) - rig.app.channels[0].total()
        assert 0 <= missing <= 60, n
        assert rig.off_by(until=cut_s) <= 1, n  # before the cut: the meter's exact count
        assert rig.off_by(since=cut_s) <= missing + 1, n


def test_reset_loop_every_20_s_for_30_minutes_keeps_energy_exact_and_publishes_every_reading(tmp_path):
    rig = Rig(tmp_path, seconds=4000)
    t = 0
    for _ in range(90):
        t += 20
        rig.until(t)
        rig.restart("watchdog")
    assert rig.app.channels[0].total() == rig.meter_pulses(t)  # 1800 pulses given, 1800 kept
    assert rig.app.channels[0].store.saved >= rig.meter_pulses(t) - 20  # flash current too
    rig.until(t + 60)
    assert rig.taken_so_far() >= 90
    assert rig.lost() == 0
    assert rig.published_once_in_order()
    assert rig.never_decreases() and rig.off_by() <= 1
    assert rig.status[-1]["resets"] == 90 and rig.status[-1]["reset_cause"] == 1
    # Then a power cut, a minute after the loop ended: at most one persist interval lost.
    rig.restart("power")
    assert rig.meter_pulses(t + 60) - rig.app.channels[0].total() <= 60


def test_a_week_offline_then_reconnect_publishes_all_60480_readings_with_their_timestamps(tmp_path):
    rig = Rig(tmp_path, watts=500, seconds=8 * 86400, values={"PERSIST_INTERVAL_S": 3600})
    rig.until(30)
    rig.board.wifi_up = False
    week = 7 * 86400
    rig.until(30 + week, step_ms=10000)
    queued = rig.app.outbox.size
    assert rig.app.outbox.on_flash >= queued - 5
    assert len(os.listdir(tmp_path / "queue")) <= spill.MAX_SEGMENTS
    rig.board.wifi_up = True
    rig.until(30 + week + 600, step_ms=10000)
    stamps = rig.stamps()
    assert queued >= 60480
    assert rig.app.outbox.size == 0 and len(stamps) == rig.taken_so_far()
    assert stamps == list(range(stamps[0], stamps[0] + 10 * len(stamps), 10))
    assert rig.off_by() <= 1 and rig.never_decreases()
    assert os.listdir(tmp_path / "queue") == []  # published segments are removed


def test_a_boot_after_two_days_offline_feeds_the_watchdog_after_each_of_its_segments_on_flash(tmp_path):
    # The Pico sums every byte of every segment at boot: seconds for a week's
    # queue, so the watchdog must be fed between segments, not once at the end.
    rig = Rig(tmp_path, watts=500, seconds=3 * 86400, values={"PERSIST_INTERVAL_S": 3600})
    rig.until(30)
    rig.board.wifi_up = False
    rig.until(30 + 2 * 86400, step_ms=10000)
    segments = len(os.listdir(tmp_path / "queue"))
    feeds = []
    rig.board.feed = lambda: feeds.append(1)
    rig.restart("watchdog")
    assert segments >= 40
    assert rig.app.outbox.on_flash >= 17000
    assert len(feeds) >= segments


def test_62_days_offline_at_hourly_readings_stamps_the_first_reading_3600_s_after_boot(tmp_path):
    rig = Rig(tmp_path, watts=200, seconds=63 * 86400, values={"REPORT_INTERVAL_S": 3600, "QUEUE_SIZE": 2000,
                                                                     "PERSIST_INTERVAL_S": 86400})
    rig.board.ntp_up = False  # no clock for 62 days: every reading waits in RAM, unstamped
    rig.until(62 * 86400 + 1, step_ms=60000)
    assert rig.app.outbox.ram.size == 1488 and rig.messages == []
    rig.board.ntp_up = True
    rig.until(62 * 86400 + 600, step_ms=60000)
    stamps = rig.stamps()
    assert stamps[0] == START + 3600  # a 32-bit ms clock put it at +4,302,167 s
    assert stamps == list(range(START + 3600, START + 3600 * 1489, 3600))


def test_readings_of_a_boot_that_never_synced_are_counted_unstamped(tmp_path):
    rig = Rig(tmp_path)
    rig.board.ntp_up = False
    rig.until(125)
    in_ram = rig.app.outbox.ram.size
    rig.restart("watchdog")
    rig.board.ntp_up = True
    rig.until(200)
    assert in_ram == 12
    assert rig.status[-1]["unstamped"] == 12 and rig.status[-1]["dropped"] == 0


def test_a_queue_size_no_heap_can_hold_is_cut_to_fit_with_one_log_line(tmp_path):
    rig = Rig.__new__(Rig)
    board = VirtualBoard([], lambda cid, will: None, str(tmp_path), START)
    board.heap = 120000
    app = make_app(board, settings_for({"MQTT_TOPIC": TOPIC, "QUEUE_SIZE": 20000}))
    assert app.outbox.capacity == (120000 - 48 * 1024) // 16
    assert [line for line in board.logs if "QUEUE_SIZE=20000" in line]
    del rig


def test_queue_overflow_is_logged_and_counted_in_the_status(tmp_path):
    rig = Rig(tmp_path, values={"QUEUE_SIZE": 16})
    rig.board.ntp_up = False  # unstamped readings stay in RAM
    rig.until(301)
    assert rig.app.outbox.dropped == 30 - 16
    assert [line for line in rig.board.logs if "queue: full at 16 readings" in line]
    rig.board.ntp_up = True
    rig.until(330)
    assert rig.status[-1]["dropped"] == 14 and rig.status[-1]["queued"] == 0


def test_a_damaged_energy_file_is_logged_counted_and_the_other_slot_used(tmp_path):
    rig = Rig(tmp_path)
    rig.until(200)
    saved = rig.app.channels[0].store.saved
    rig.restart("power")
    newest = max((tmp_path / n for n in ("energy.dat", "energy.dat.2")), key=lambda p: p.stat().st_mtime_ns)
    newest.write_text("garbage\n")
    rig.restart("power")
    store = rig.app.channels[0].store
    assert store.damaged == 1 and 0 < saved - store.base <= 60
    assert [line for line in rig.board.logs if "is damaged" in line]
    rig.until(300)
    assert rig.status[-1]["energy_damaged"] == 1


def test_status_is_retained_with_the_12_agreed_keys_numbers_only_at_connect_and_every_60_s(tmp_path):
    rig = Rig(tmp_path)
    rig.board.sources[0].bounce = (5000,)  # a flickering sensor: an extra edge pair 5 ms into each pulse
    rig.until(185)
    topic = health.status_topic(rig.settings)
    assert topic == TOPIC + "/status"
    assert len(rig.status) == 4  # at connect, then 60, 120, 180 s
    s = rig.status[-1]
    assert sorted(s) == sorted(["host", "uptime_s", "reset_cause", "resets", "heap_free", "rssi", "queued",
                                "dropped", "spilled", "unstamped", "rejected", "energy_damaged"])
    assert all(isinstance(v, (int, float)) for k, v in s.items() if k != "host") and s["host"] == "pico"
    assert "timestamp" not in s  # Telegraf drops it
    assert 180 <= s["uptime_s"] <= 185 and s["rssi"] == -58 and s["heap_free"] == 180000
    assert s["rejected"] >= 170  # the flicker shows from the couch
    assert json.loads(rig.retained[topic]) == s


def test_a_reconnect_within_a_boot_does_not_add_the_boots_pulses_again(tmp_path):
    rig = Rig(tmp_path)
    rig.until(300)
    rig.broker_up = False
    rig.app.link.client.close()
    rig.app.link.client = None
    rig.app.link.state = "WIFI"
    rig.until(400)
    rig.broker_up = True
    rig.until(600)
    assert rig.app.channels[0].total() == rig.meter_pulses(600)
    assert rig.off_by() <= 1 and rig.never_decreases()


def test_power_cut_at_each_flash_operation_of_the_drain_publishes_nothing_twice_and_no_lower_total(tmp_path):
    for n in range(1, 7):
        rig = Rig(tmp_path / str(n), seconds=4000)
        rig.until(100)
        rig.board.wifi_up = False
        rig.until(1500)  # 140 readings on flash, in 1 segment
        rig.board.wifi_up = True
        rig.board.cut_at = n
        try:
            rig.until(2500)
            raise AssertionError("fewer than %d flash operations" % n)
        except PowerCut:
            pass
        cut_s = rig.board.us / 1e6
        rig.restart("power")
        rig.until(cut_s + 400)
        assert rig.published_once_in_order(), n  # the broker's floor skips what was published
        assert rig.never_decreases(), n
        assert set(range(START + 10, START + int(cut_s) - 60, 10)) <= set(rig.stamps()), n
        assert rig.off_by(until=cut_s) <= 1, n


def test_62_days_offline_after_a_clock_sync_at_hourly_readings_keeps_every_timestamp(tmp_path):
    rig = Rig(tmp_path, watts=200, seconds=63 * 86400, values={"REPORT_INTERVAL_S": 3600, "QUEUE_SIZE": 2000,
                                                                 "PERSIST_INTERVAL_S": 86400})
    rig.until(60)
    rig.board.wifi_up = False
    rig.until(62 * 86400 + 1, step_ms=60000)
    assert rig.app.outbox.size == 1488 and rig.app.outbox.on_flash >= 1487
    rig.board.wifi_up = True
    rig.until(62 * 86400 + 300)
    assert rig.stamps() == list(range(START + 3600, START + 3600 * 1489, 3600))


def test_a_meter_constant_changed_across_a_soft_reset_converts_the_total_and_ignores_the_old_scratch_word(tmp_path):
    rig = Rig(tmp_path)
    rig.until(125)
    total = rig.app.channels[0].total()
    rig.app.shutdown()
    rig.settings = settings_for({"MQTT_TOPIC": TOPIC, "HOSTNAME": "pico", "IMP_PER_KWH": 2000})
    rig.restart("soft")
    store = rig.app.channels[0].store
    assert store.converted and store.base == store.saved  # the old word would have added 16,000 pulses
    assert 2 * (total - 60) <= store.base <= 2 * total
