"""The whole firmware loop on a virtual Pico: queueing, clock, energy across reboots."""

import os

from picopower.loads import Profile
from tests.conftest import START, RecordedBoard


class Run(RecordedBoard):
    """One virtual board running the firmware on a load profile, with a recorded broker."""

    def __init__(self, tmp_path, profile, seconds, values=None, imp=1000, phase=0.5):
        values = dict({"HOSTNAME": "picopower", "IMP_PER_KWH": imp}, **(values or {}))
        super().__init__(tmp_path, values, [profile.pulse_times(imp, seconds, phase)])


def test_ten_minute_wifi_outage_loses_no_reading_and_keeps_original_timestamps(tmp_path):
    run = Run(tmp_path, Profile.constant(1000), 1800)
    run.until(300)
    run.board.wifi_up = False
    run.until(900)
    queued = run.app.outbox.size
    run.board.wifi_up = True
    run.until(1500)
    stamps = [m["timestamp"] for m in run.messages]
    assert queued >= 55
    assert stamps == sorted(stamps)
    gaps = {b - a for a, b in zip(stamps, stamps[1:])}
    assert gaps == {10}
    assert len(stamps) == run.app.readings - run.app.outbox.size
    assert all(abs(m["power"] - 1000) < 1 for m in run.messages[1:])


def test_readings_before_the_first_ntp_answer_are_stamped_when_it_comes(tmp_path):
    run = Run(tmp_path, Profile.constant(500), 900)
    run.board.ntp_up = False
    run.until(240)
    assert run.messages == []
    assert run.app.outbox.size >= 23
    run.board.ntp_up = True
    run.until(400)
    first = run.messages[0]["timestamp"]
    assert abs(first - (START + 10)) <= 1
    assert [m["timestamp"] - first for m in run.messages[:24]] == list(range(0, 240, 10))


def test_energy_total_survives_a_power_cut_losing_at_most_one_persist_interval(tmp_path):
    profile = Profile.constant(3600)  # one pulse a second at 1000 imp/kWh
    run = Run(tmp_path, profile, 1000, {"PERSIST_INTERVAL_S": 60})
    run.until(630)
    before_cut = run.app.channels[0].total()
    # Power cut: a new board on the same flash, the meter keeps counting.
    run2 = Run(tmp_path, profile, 400, {"PERSIST_INTERVAL_S": 60})
    stored = run2.app.channels[0].store.base
    assert before_cut - 60 <= stored <= before_cut
    run2.until(100)
    last = run2.messages[-1]
    # Exact in pulses: one per second since the reboot, on top of the stored total.
    assert abs((last["pulses"] - stored) - (last["timestamp"] - START)) <= 1
    assert last["timestamp"] - START >= 80


def test_a_full_disk_is_logged_and_counting_goes_on(tmp_path):
    run = Run(tmp_path, Profile.constant(3600), 400, {"PERSIST_INTERVAL_S": 60})
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root ignores permissions: fail the write instead
            run.app.channels[0].store.path = str(tmp_path / "missing-dir" / "energy.dat")
        run.until(200)
    finally:
        os.chmod(tmp_path, 0o700)
    assert run.app.channels[0].store.failures >= 2
    assert any("cannot save total" in line for line in run.board.logs)
    last = run.messages[-1]
    assert abs(last["pulses"] - (last["timestamp"] - START)) <= 1
    assert last["timestamp"] - START >= 180


def test_meter_constant_change_converts_the_stored_total(tmp_path):
    run = Run(tmp_path, Profile.constant(3600), 300, {"PERSIST_INTERVAL_S": 60})
    run.until(130)
    saved = run.app.channels[0].store.saved
    run2 = Run(tmp_path, Profile.constant(0), 10, {"PERSIST_INTERVAL_S": 60}, imp=2000)
    assert run2.app.channels[0].store.base == saved * 2


def test_seed_message_has_exactly_the_seed_keys_plus_numeric_energy_fields(tmp_path):
    run = Run(tmp_path, Profile.constant(750), 120, {"HOSTNAME": "pico1", "SERIESNAME": "house"})
    run.until(100)
    m = run.messages[-1]
    assert list(m)[:4] == ["power", "timestamp", "measurement", "host"]
    assert isinstance(m["power"], float) and isinstance(m["timestamp"], int)
    assert (m["measurement"], m["host"]) == ("house", "pico1")
    assert isinstance(m["energy"], float) and isinstance(m["pulses"], int)
    assert abs(m["power"] - 750) < 0.5


def test_broker_outage_goes_offline_with_backoff_and_logs_one_line_reasons(tmp_path):
    run = Run(tmp_path, Profile.constant(500), 600)

    def refuse(cid, will):
        raise OSError("ECONNREFUSED")

    run.board.mqtt_factory = refuse
    run.until(200)
    fails = [line for line in run.board.logs if "broker" in line and "retrying" in line]
    assert 4 <= len(fails) <= 10  # 1, 2, 4, 8, 16, 32, 60 s apart
    assert run.app.link.state == "OFFLINE"
    assert run.messages == []


def test_hourly_ntp_resync_keeps_the_broker_connection_up(tmp_path):
    run = Run(tmp_path, Profile.constant(400), 4000, {"NTP_INTERVAL_S": 600})
    connects = []
    factory = run.board.mqtt_factory
    run.board.mqtt_factory = lambda cid, will: connects.append(cid) or factory(cid, will)
    run.until(3000)
    assert run.app.wall.syncs >= 5
    assert len(connects) == 1


def test_out_of_memory_while_connecting_is_one_log_line_and_a_retry_losing_no_reading(tmp_path):
    # A TLS handshake on the Pico W's heap can raise MemoryError: the link must
    # treat it like a network failure, not let it end the app (a reset loop).
    run = Run(tmp_path, Profile.constant(1000), 900)
    real = run.board.mqtt_factory
    tries = []

    def short_of_memory(cid, will):
        tries.append(run.board.us)
        if len(tries) <= 3:
            raise MemoryError("memory allocation failed, allocating 16709 bytes")
        return real(cid, will)
    run.board.mqtt_factory = short_of_memory
    run.until(600)
    refused = [line for line in run.board.logs if "memory allocation failed" in line]
    assert len(refused) == 3
    stamps = [m["timestamp"] for m in run.messages]
    assert [s - stamps[0] for s in stamps] == list(range(0, 10 * len(stamps), 10))
    assert abs(stamps[0] - (START + 10)) <= 1
    assert len(stamps) == run.app.readings - run.app.outbox.size >= 58
