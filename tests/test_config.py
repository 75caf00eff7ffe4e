"""Settings: a seed user's secrets.py works unchanged; every problem is one clear line."""

import types

from picopower.firmware import config

SEED = dict(WIFI_SSID="home", WIFI_PASS="pw", MQTT_SERVER="192.168.1.10", MQTT_PORT=1883,
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
