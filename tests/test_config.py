"""Settings: a seed user's secrets.py works unchanged; every problem is one clear line."""

import json
import types

import pytest

from picopower.firmware import config

SEED = dict(WIFI_SSID="home", WIFI_PASS="wifi password", MQTT_SERVER="192.168.1.10", MQTT_PORT=1883,
            HOSTNAME="pico", SERIESNAME="power", MQTT_TOPIC="sensors/power")


def test_the_seed_secrets_module_validates_with_no_error_and_one_channel():
    module = types.SimpleNamespace(**SEED)
    settings, errors, warnings = config.from_module(module)
    assert errors == [] and warnings == []
    assert len(settings["channels"]) == 1
    ch = settings["channels"][0]
    assert (ch["imp_per_kwh"], ch["seriesname"], ch["pin"]) == (1000, "power", 22)
    assert settings["availability_topic"] == "picopower/pico/status"


def test_a_bad_port_gives_exactly_the_documented_message():
    _, errors, _ = config.check(dict(SEED, MQTT_PORT="18a3"))
    assert errors == ["MQTT_PORT must be an integer 1-65535, got '18a3'"]


def test_three_problems_give_three_lines_at_once():
    values = dict(SEED, IMP_PER_KWH=0, PULSE_PIN=24, MQTT_TOPIC="a/#")
    del values["WIFI_SSID"]
    _, errors, _ = config.check(values)
    assert len(errors) == 4
    assert all("\n" not in e for e in errors)
    joined = " | ".join(errors)
    for name in ("WIFI_SSID", "IMP_PER_KWH", "PULSE_PIN", "MQTT_TOPIC"):
        assert name in joined


def test_mqtt_server_may_be_a_host_name():
    _, errors, _ = config.check(dict(SEED, MQTT_SERVER="mqtt.home.arpa"))
    assert errors == []


def test_an_unknown_setting_is_a_warning_not_an_error():
    _, errors, warnings = config.check(dict(SEED, MQTT_PROT=1883))
    assert errors == [] and warnings == ["MQTT_PROT is not a setting this firmware knows; ignored"]


def only_error(**values):
    _, errors, _ = config.check(dict(SEED, **values))
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    return errors[0]


def test_a_watchdog_of_3000_ms_is_refused_in_one_line_as_shorter_than_a_network_step():
    e = only_error(WATCHDOG_MS=3000)
    assert e.startswith("WATCHDOG_MS must be 0 (off) or an integer %d-8388" % config.MIN_WATCHDOG_MS)
    assert config.check(dict(SEED, WATCHDOG_MS=0))[1] == []
    assert config.check(dict(SEED, WATCHDOG_MS=config.MIN_WATCHDOG_MS))[1] == []


def test_the_watchdog_outlasts_the_longest_network_step_the_board_layer_allows():
    import ast
    from picopower.firmware import LIB_DIR
    consts = {}
    for node in ast.parse((LIB_DIR / "board.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            v = node.value
            if isinstance(v, ast.Call) and getattr(v.func, "id", "") == "const":
                v = v.args[0]
            if isinstance(v, ast.Constant) and isinstance(v.value, int):
                consts[node.targets[0].id] = v.value
    step_ms = consts.get("STEP_MS", consts.get("SOCKET_TIMEOUT_S", 0) * 1000)
    assert 0 < step_ms <= config.NETWORK_STEP_MS < config.MIN_WATCHDOG_MS
    assert consts.get("NTP_TIMEOUT_S", 0) * 1000 <= config.NETWORK_STEP_MS


def test_1_imp_per_kwh_at_5000_w_max_is_refused_as_a_720_s_gap_no_tick_can_measure():
    e = only_error(IMP_PER_KWH=1, MAX_POWER_W=5000)
    assert e.startswith("IMP_PER_KWH 1 with MAX_POWER_W 5000 means pulses at least 720 s apart")
    assert "60000" in e  # the MAX_POWER_W that would do
    assert config.check(dict(SEED, IMP_PER_KWH=1, MAX_POWER_W=60000))[1] == []


def test_a_channel_of_10_imp_at_100_w_is_refused_with_its_channel_named():
    e = only_error(CHANNELS=[{"PIN": 22, "IMP_PER_KWH": 10, "MAX_POWER_W": 100}])
    assert e.startswith("CHANNELS[0].IMP_PER_KWH 10 with MAX_POWER_W 100 means pulses at least 3600 s apart")


def test_hostname_with_a_backslash_or_nel_and_seriesname_starting_with_hash_are_refused():
    assert only_error(HOSTNAME="pico\\1").startswith("HOSTNAME has a backslash")
    assert only_error(HOSTNAME="pico\x851").startswith("HOSTNAME has control characters, got 'pico\\x851'")
    assert only_error(HOSTNAME="pico\u20281").startswith("HOSTNAME has control characters")
    assert only_error(SERIESNAME="#power").startswith("SERIESNAME starts with #")
    assert config.check(dict(SEED, HOSTNAME="pico-1", SERIESNAME="pow#er"))[1] == []


def test_an_ssid_of_32_characters_but_64_utf8_bytes_and_an_empty_ssid_are_refused():
    assert only_error(WIFI_SSID="\u00e9" * 32).endswith("got 64 bytes")
    assert only_error(WIFI_SSID="").endswith("got 0 bytes")
    assert config.check(dict(SEED, WIFI_SSID="\u00e9" * 16))[1] == []
    assert config.check(dict(SEED, WIFI_SSID="x" * 32))[1] == []


def test_wifi_passwords_of_5_characters_or_64_non_hex_are_refused_without_echo_and_wpa2_forms_pass():
    for bad in ("hello", "g" * 64, "x" * 65, "a" * 7):
        e = only_error(WIFI_PASS=bad)
        assert e.startswith("WIFI_PASS must be empty (open network), 8-63") and bad not in e
    for good in ("", "a" * 8, "p" * 63, "0123456789abcdefABCDEF" * 2 + "0" * 20):
        assert config.check(dict(SEED, WIFI_PASS=good))[1] == [], good


NEW_RULES = """
import json
import config
base = {'WIFI_SSID': 'home', 'WIFI_PASS': 'wifi password', 'MQTT_SERVER': 'h', 'MQTT_TOPIC': 't'}
out = []
for k, v in (('WATCHDOG_MS', 3000), ('IMP_PER_KWH', 1), ('HOSTNAME', 'a\\\\b'), ('HOSTNAME', 'a\\x85b'),
             ('SERIESNAME', '#p'), ('WIFI_SSID', '\\u00e9' * 32), ('WIFI_SSID', ''), ('WIFI_PASS', 'hello'),
             ('WIFI_PASS', 'ab' * 32), ('WATCHDOG_MS', 0)):
    values = dict(base)
    values[k] = v
    if k == 'IMP_PER_KWH':
        values['MAX_POWER_W'] = 5000
    out.append(config.check(values)[1])
print(json.dumps(out))
"""


@pytest.mark.micropython
def test_the_new_rules_give_the_same_ten_answers_on_micropython(capsys):
    from picopower import firmware
    from tests import mpy
    firmware.run(NEW_RULES)
    host = json.loads(capsys.readouterr().out)
    assert [len(e) for e in host] == [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert mpy.run_json(NEW_RULES)[0] == host
