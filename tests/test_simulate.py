"""`picopower simulate`: the firmware's loop on virtual boards against a real Mosquitto."""

import json
import subprocess
import sys
import threading
import time

import pytest

from picopower.firmware import discovery
from picopower.loads import Profile
from picopower.mqtt import listen
from picopower.simulate import Simulation
from picopower.urls import parse_broker
from tests import servers

TOPIC = "sim/power"
START = 1767225600  # 2026-01-01 00:00:00 UTC


class Listener:
    """Every JSON payload on a topic, through the host's one MQTT client."""

    def __init__(self, url, topic=TOPIC):
        self.got = []
        self._lock = threading.Lock()
        self.c = listen(parse_broker(url), topic, self._on_message, client_id="listener")

    def _on_message(self, topic, payload, retained):
        with self._lock:
            self.got.append(json.loads(payload))

    def wait_for(self, n, timeout=10):
        servers.wait_until(lambda: len(self.got) >= n, timeout=timeout, what="%d messages" % n)
        time.sleep(0.05)
        return list(self.got)

    def close(self):
        self.c.close()


@pytest.fixture
def listener(mosquitto):
    lst = Listener(mosquitto.url)
    yield lst
    lst.close()


def test_profile_pulses_are_lazy_a_constant_load_yields_forever_and_pulse_times_is_their_list():
    from itertools import islice
    p = Profile.constant(2000)  # 1.8 s a pulse at 1000 imp/kWh
    assert [round(t, 6) for t in islice(p.pulses(1000, phase=0.5), 4)] == [0.9, 2.7, 4.5, 6.3]
    assert p.pulse_times(1000, 6.3) == list(islice(p.pulses(1000, 0.5), 4))
    assert list(Profile([(0, 3600), (2, 0)]).pulses(1000, 0.0)) == [1.0, 2.0]  # the load stops: so do pulses


pytestmark = pytest.mark.servers


def test_three_boards_publish_every_10s_with_own_host_and_energy_within_one_pulse_of_the_profile(
        mosquitto, listener):
    profile = Profile([(0, 600), (40, 2400), (100, 150)])
    sim = Simulation(mosquitto.url, TOPIC, profile=profile, meters=3, host="flat", series="mains",
                     imp_per_kwh=1000, interval_s=10, speed=0, start_unix_s=START)
    try:
        sim.run(180)
        assert sim.drain()
        taken = sim.taken()
        # on one timeline to 180 s: flat-1 (boots at 0 s) has 18 readings, the later two 17
        assert len(taken) == 18 + 17 + 17 == sim.readings() == sim.published()
        got = listener.wait_for(len(taken))
    finally:
        sim.close()
    assert len(got) == len(taken)
    assert {m["host"] for m in got} == {"flat-1", "flat-2", "flat-3"}
    assert {m["measurement"] for m in got} == {"mains"}
    assert sorted((m["host"], m["timestamp"]) for m in got) == sorted((r.host, r.ts) for r in taken)
    for meter in sim.meters:
        mine = sorted((m for m in got if m["host"] == meter.host), key=lambda m: m["timestamp"])
        # boots staggered over the interval: flat-1 at +0 s, flat-2 at +3.33 s, flat-3 at +6.67 s
        boot = START + 10 * meter.index / 3
        assert [m["timestamp"] for m in mine] == [int(boot + 10 * k) for k in range(1, 19)
                                                  if boot + 10 * k <= START + 180]
        local = {r.ts: r.local_s for r in meter.taken}  # the exact board time of each reading
        for m in mine:
            truth = meter.true_kwh(local[m["timestamp"]]) * 1000  # in pulses at 1000 imp/kWh
            assert abs(m["pulses"] - truth) <= 1.0, (meter.host, m, truth)
            assert m["energy"] == round(m["pulses"] / 1000, 6)
        # steady windows (not the first after a step change; 150 W is one pulse in 24 s, too slow
        # for a 10 s window) read the load within 3 %
        steady = [m for m in mine if 20 <= m["timestamp"] - boot <= 40 or 60 <= m["timestamp"] - boot <= 100]
        assert len(steady) >= 6
        for m in steady:
            w = profile.power_at(m["timestamp"] - boot - 0.5)
            assert abs(m["power"] - w) <= 0.03 * w, (meter.host, m, w)
    assert len({m.phase for m in sim.meters}) == 3


def test_speed_20_runs_20_virtual_seconds_in_about_one_wall_second(mosquitto):
    sim = Simulation(mosquitto.url, TOPIC, profile=Profile.constant(1000), speed=20, start_unix_s=START)
    try:
        t0 = time.monotonic()
        sim.run(20)
        wall = time.monotonic() - t0
    finally:
        sim.close()
    assert 0.95 <= wall <= 1.5, wall
    assert sim.readings() == 2 and sim.published() == 2


def test_wifi_off_for_90s_queues_readings_then_publishes_all_with_their_original_timestamps(
        mosquitto, listener):
    sim = Simulation(mosquitto.url, TOPIC, profile=Profile.constant(900), meters=2, speed=0,
                     start_unix_s=START)
    try:
        sim.run(60)
        sim.meters[1].board.wifi_up = False
        sim.run(150)
        off = sim.meters[1]
        assert off.queued >= 8 and off.app.link.state != "ONLINE"
        assert sim.meters[0].queued == 0
        sim.meters[1].board.wifi_up = True
        sim.run(300)
        assert sim.drain()
        taken = sim.taken()
        got = listener.wait_for(len(taken))
    finally:
        sim.close()
    stamps = sorted((m["host"], m["timestamp"]) for m in got)
    assert stamps == sorted((r.host, r.ts) for r in taken)
    assert len(set(stamps)) == len(stamps) == 30 + 29  # the second board boots 5 s later
    late = [m for m in got if m["host"] == off.host and 60 < m["timestamp"] - START < 150]
    assert [m["timestamp"] - START for m in late] == list(range(65, 150, 10))  # taken with Wi-Fi off


def test_a_fleet_of_300_boards_runs_on_one_thread_and_publishes_every_reading(mosquitto, listener):
    before = threading.active_count()
    sim = Simulation(mosquitto.url, TOPIC, profile=Profile.constant(500), meters=300, speed=0,
                     start_unix_s=START)
    try:
        sim.run(60)
        assert threading.active_count() == before  # no thread per paho client
        assert sim.online() == 300
        assert sim.drain()
        got = listener.wait_for(sim.published())
    finally:
        sim.close()
    # boots spread over the first 10 s: board 1 takes its 6th reading at 60 s, the others at 60-70 s
    assert sim.readings() == sim.published() == len(got) == 6 + 299 * 5
    assert len({m["host"] for m in got}) == 300


def _simulate(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "picopower", "simulate", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_prints_progress_on_stderr_and_a_summary_with_energy_per_meter(mosquitto, listener):
    r = _simulate("--broker", mosquitto.url, "--topic", TOPIC, "--watts", 3600, "--duration", 100,
                  "--speed", 50, "--meters", 2, "--host", "shed", "--start", START)
    assert r.returncode == 0, r.stderr
    assert "virtual 00:01:" in r.stderr and "Traceback" not in r.stderr
    out = r.stdout
    # shed-1 boots at 0 s and reports at 10..100 s, shed-2 boots at 5 s and reports at 15..95 s
    assert "19 readings taken, 19 published, 0 still queued" in out
    # 3600 W for 100 s is 0.1 kWh per board
    assert "shed-1" in out and "shed-2" in out and "0.100 kWh counted (profile 0.100 kWh)" in out
    got = listener.wait_for(19)
    assert {m["host"] for m in got} == {"shed-1", "shed-2"}


def test_cli_unreachable_broker_warns_keeps_queueing_then_fails_with_one_line_and_exit_2():
    port = servers.free_port()
    r = _simulate("--broker", "mqtt://127.0.0.1:%d" % port, "--topic", TOPIC, "--watts", 100,
                  "--duration", 40, "--speed", 20)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    assert any("warning: cannot reach mqtt://127.0.0.1:%d: connection refused" % port in ln for ln in err)
    assert err[-1].startswith("picopower simulate: error: never connected to mqtt://127.0.0.1:%d" % port)
    assert "4 readings taken, 0 published, 4 still queued" in r.stdout


def test_cli_bad_profile_line_and_bad_flags_are_one_line_errors(tmp_path, mosquitto):
    bad = tmp_path / "load.txt"
    bad.write_text("0 100\n60 lots\n")
    cases = [(["--profile", bad], "load.txt:2"),
             (["--watts", -5], "--watts must be a number >= 0"),
             (["--interval", 0], "--interval must be 1-3600"),
             (["--speed", -1], "--speed must be 0"),
             (["--meters", 0], "--meters must be 1-100000")]
    for extra, text in cases:
        r = _simulate("--broker", mosquitto.url, "--topic", TOPIC, "--duration", 10, *extra)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and text in lines[0], (extra, r.stderr)
    r = _simulate("--broker", "http://x", "--topic", TOPIC, "--duration", 10)
    assert r.returncode == 2 and "mqtt://" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_profile_file_drives_the_boards_load(tmp_path, mosquitto, listener):
    prof = tmp_path / "kettle.txt"
    prof.write_text("# seconds watts\n0 100\n30, 2000\n60 100\n")
    r = _simulate("--broker", mosquitto.url, "--topic", TOPIC, "--profile", prof, "--duration", 90,
                  "--speed", 0, "--imp-per-kwh", 10000, "--start", START)
    assert r.returncode == 0, r.stderr
    got = sorted(listener.wait_for(9), key=lambda m: m["timestamp"])
    assert [m["timestamp"] - START for m in got] == list(range(10, 100, 10))
    assert [round(m["power"] / 100) * 100 for m in got[3:6]] == [2000, 2000, 2000]
    assert abs(got[-1]["energy"] - (100 * 60 + 2000 * 30) / 3.6e6) <= 1e-4


def test_boards_publish_over_tls_verified_by_the_ca_file_and_an_unknown_ca_is_refused(tmp_path):
    ca, cert, key = servers.make_test_certs(str(tmp_path / "certs"))
    other_ca = servers.make_test_certs(str(tmp_path / "other"))[0]
    with servers.Mosquitto(tls=(ca, cert, key)) as broker:
        ok = Simulation(broker.tls_url, TOPIC, profile=Profile.constant(2000), speed=0, start_unix_s=START,
                        ca_file=ca)
        bad = Simulation(broker.tls_url, TOPIC, profile=Profile.constant(2000), speed=0, start_unix_s=START,
                         ca_file=other_ca, host="mallory")
        try:
            ok.run(60)
            bad.run(60)
        finally:
            ok.close()
            bad.close()
    assert ok.published() == ok.readings() == 6 and ok.ever_connected
    assert bad.published() == 0 and bad.queued() == 6 and not bad.ever_connected
    assert "certificate verify failed" in bad.first_error
    with pytest.raises(ValueError, match="no such file"):
        Simulation(broker.tls_url, TOPIC, ca_file=str(tmp_path / "nope.crt"))


def retained_configs(url, prefix="homeassistant"):
    """The discovery configs Home Assistant would find retained on the broker."""
    got = {}
    c = listen(parse_broker(url), prefix + "/#", lambda t, p, r: got.__setitem__(t, p) if r else None)
    time.sleep(0.3)
    c.close()
    return {t: json.loads(p) for t, p in got.items() if p}


def test_two_simulations_of_2_boards_at_once_have_4_distinct_board_ids_and_52_ha_entities_gone_at_close(mosquitto):
    n = len(discovery.HEALTH) + 2
    sims = [Simulation(mosquitto.url, TOPIC, profile=Profile.constant(1000), meters=2, host="flat", speed=0,
                       start_unix_s=START, extra={"HA_DISCOVERY": True}) for _ in range(2)]
    try:
        for until in (15, 45):  # interleaved: both fleets connected at once
            for sim in sims:
                sim.run(until)
        uids = [c["unique_id"] for c in retained_configs(mosquitto.url).values()]
    finally:
        for sim in sims:
            sim.close()
    ids = [m.board.unique_id() for sim in sims for m in sim.meters]
    assert len(set(ids)) == 4 and all(len(i) == 16 for i in ids)
    assert all(sim.last_error is None and sim.published() == sim.readings() == 4 + 4 for sim in sims)
    assert len(uids) == len(set(uids)) == 4 * n
    assert retained_configs(mosquitto.url) == {}  # boards that die with their run leave no devices


def test_cli_set_turns_on_discovery_and_a_data_dir_keeps_the_board_ids_a_new_one_makes_new(mosquitto, tmp_path):
    def run(data_dir):
        r = _simulate("--broker", mosquitto.url, "--topic", TOPIC, "--watts", 500, "--duration", 20, "--speed", 0,
                      "--set", "HA_DISCOVERY=True", "--set", "HA_EXPIRE_S=90", "--set", "HA_PREFIX=ha",
                      "--data-dir", data_dir)
        assert r.returncode == 0, r.stderr
        return {c["unique_id"]: c.get("expire_after") for c in retained_configs(mosquitto.url, "ha").values()}

    first = run(tmp_path / "a")
    assert len(first) == len(discovery.HEALTH) + 2
    assert sorted(v for v in first.values() if v) == [90, 90]
    assert run(tmp_path / "a") == first  # the same boards, resumed
    assert len(run(tmp_path / "b")) == 2 * len(first)  # new boards


def test_cli_set_refuses_bad_values_unknown_names_and_flags_own_settings_in_one_line(mosquitto):
    cases = [(["--set", "HA_DISCOVERY=yes"], "HA_DISCOVERY must be True or False, got 'yes'"),
             (["--set", "REPORT_INTERVAL_S"], "expected NAME=VALUE"),
             (["--set", "FOO=1"], "FOO: not a firmware setting"),
             (["--set", "HOSTNAME=x"], "HOSTNAME: set it with --host"),
             (["--set", "WIFI_PASS=[1]"], "WIFI_PASS must be text in quotes (value not shown)"),
             (["--set", "MQTT_PASS='x'"], "MQTT_PASS: set it with --broker"),
             (["--set", "CHANNELS=[{'PIN': 22}, {'PIN': 22}]"], "CHANNELS[1].PIN 22 is already used")]
    for extra, text in cases:
        r = _simulate("--broker", mosquitto.url, "--topic", TOPIC, "--duration", 10, *extra)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and text in lines[0], (extra, r.stderr)


def test_cli_set_channels_runs_two_meters_per_board_each_counting_the_load(mosquitto, listener):
    r = _simulate("--broker", mosquitto.url, "--topic", TOPIC, "--watts", 1800, "--duration", 60, "--speed", 0,
                  "--start", START, "--set", "CHANNELS=[{'PIN': 22, 'SERIESNAME': 'house'}, "
                                                   "{'PIN': 21, 'SERIESNAME': 'garage', 'IMP_PER_KWH': 800}]")
    assert r.returncode == 0, r.stderr
    got = listener.wait_for(12)
    assert sorted({m["measurement"] for m in got}) == ["garage", "house"]
    for series in ("house", "garage"):
        last = max((m for m in got if m["measurement"] == series), key=lambda m: m["timestamp"])
        assert abs(last["energy"] - 0.03) <= 0.0013  # 1800 W for 60 s, within a pulse at 800 imp/kWh
        assert abs(last["power"] - 1800) <= 0.05 * 1800
