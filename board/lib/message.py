"""The published JSON, in the seed's format.

Keys `power` (a JSON number that always has a decimal point, so Telegraf's
JSON parser stores a float field), `timestamp` (unix seconds at measurement
time), `measurement` (SERIESNAME, the InfluxDB measurement through
json_name_key) and `host` (HOSTNAME, a tag through tag_keys). Extra keys are
numbers only, because Telegraf drops strings it was not told about: `energy`
(kWh since installation, exact in pulses) and `pulses` (the raw count).

The energy is formatted from integers, not floats: a 32-bit float on the Pico
cannot hold 12345.678 kWh to the Wh.
"""

import json

KEYS = ("power", "timestamp", "measurement", "host")
EXTRA_KEYS = ("energy", "pulses")


def kwh_text(pulses, imp_per_kwh):
    """Energy in kWh as exact decimal text, rounded to 1 mWh (0.000001 kWh)."""
    micro = (pulses * 1000000 + imp_per_kwh // 2) // imp_per_kwh
    whole, frac = divmod(micro, 1000000)
    text = "%d.%06d" % (whole, frac)
    text = text.rstrip("0")
    if text.endswith("."):
        text += "0"
    return text


def power_text(watts):
    if watts != watts or watts < 0:  # NaN never leaves the board
        watts = 0.0
    return "%.1f" % watts


def reading(power, timestamp, measurement, host, pulses, imp_per_kwh):
    return '{"power": %s, "timestamp": %d, "measurement": %s, "host": %s, "energy": %s, "pulses": %d}' % (
        power_text(power), timestamp, json.dumps(measurement), json.dumps(host),
        kwh_text(pulses, imp_per_kwh), pulses)
