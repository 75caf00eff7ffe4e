"""Validating the board's messages and writing them as InfluxDB 1.x line protocol.

`parse(payload)` turns one MQTT payload into a `Point` or raises `Rejected`
with a short fixed reason ("invalid JSON", "power is not a number", ...). It
uses the firmware's own key names (message.KEYS, message.EXTRA_KEYS) and does
what the seed's Telegraf does (json_name_key measurement, json_time_key
timestamp, json_time_format unix, tag_keys host), only stricter:

- the payload is at most 64 KiB of JSON and an object, without duplicate keys;
- `power` is a finite number from 0 to 1e6 W (a string such as "123.4" is
  rejected, as Telegraf drops it); `timestamp` is a finite number of unix
  seconds, not before 2020 and at most one day ahead of this machine's clock;
- `measurement` and `host` pass the board's own name rule,
  config.name_problem: non-empty strings of at most 64 characters, without
  control or invisible characters (newlines, NEL, line separators included)
  or backslashes (a trailing backslash cannot be written in InfluxDB 1.x line
  protocol), and the measurement does not start with '#' (a comment line);
- `energy` and `pulses`, when present, are finite numbers; other keys are
  ignored (never written), so the stored schema stays the firmware's.

`line(point, precision)` writes `<measurement>,host=<host> power=<W>[,energy=..,pulses=..] <time>`,
with every field a float (never `i`, as Telegraf writes them) and names
escaped, so no crafted name can add a tag, a field or a point.
"""

import json
import math
import time
from collections import namedtuple

from picopower.firmware import config, message  # noqa: E402

MAX_PAYLOAD = 64 * 1024
MAX_NAME = config.NAME_MAX
MAX_POWER = 1e6
MIN_TIME = 1577836800  # 2020-01-01T00:00:00Z
MAX_AHEAD_S = 86400

POWER, TIMESTAMP, MEASUREMENT, HOST = message.KEYS
NUMBER_FIELDS = (POWER,) + tuple(message.EXTRA_KEYS)

Point = namedtuple("Point", "measurement host time fields")
"""time: int (whole unix seconds) or float (fractional); fields: dict name -> float, power first."""


class Rejected(ValueError):
    """A message that is not written; `reason` is one of a small fixed set of strings."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Rejected("duplicate key")
        d[k] = v
    return d


def _number(obj, key):
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Rejected("%s is not a number" % key)
    try:
        f = float(v)
    except OverflowError:
        raise Rejected("%s is not finite" % key) from None
    if not math.isfinite(f):
        raise Rejected("%s is not finite" % key)
    return v, f


def _name(obj, key):
    """The board's own rule (config.name_problem): what the board's validator
    accepts as HOSTNAME or SERIESNAME, the bridge stores."""
    v = obj[key]
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise Rejected("%s is not valid Unicode" % key) from None
    problem = config.name_problem(v, key == MEASUREMENT)
    if problem:
        raise Rejected("%s %s" % (key, problem))
    return v


def parse(payload, now=None):
    """One MQTT payload (bytes or str) -> Point; raises Rejected(reason)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    if len(payload) > MAX_PAYLOAD:
        raise Rejected("payload too large")
    try:
        obj = json.loads(payload, object_pairs_hook=_no_duplicates)
    except Rejected:
        raise
    except (ValueError, RecursionError):
        raise Rejected("invalid JSON") from None
    if not isinstance(obj, dict):
        raise Rejected("not a JSON object")
    for key in message.KEYS:
        if key not in obj:
            raise Rejected("missing %s" % key)
    _, power = _number(obj, POWER)
    if not 0 <= power <= MAX_POWER:
        raise Rejected("power out of range")
    ts, tsf = _number(obj, TIMESTAMP)
    if tsf < MIN_TIME:
        raise Rejected("timestamp before 2020")
    if tsf > (time.time() if now is None else now) + MAX_AHEAD_S:
        raise Rejected("timestamp in the future")
    if isinstance(ts, float):
        ms = round(ts * 1000)
        ts = ms // 1000 if ms % 1000 == 0 else ms / 1000.0
    measurement = _name(obj, MEASUREMENT)
    host = _name(obj, HOST)
    fields = {POWER: power}
    for key in message.EXTRA_KEYS:
        if key in obj:
            fields[key] = _number(obj, key)[1]
    return Point(measurement, host, ts, fields)


# -- line protocol -----------------------------------------------------------------------

def escape_measurement(s):
    return s.replace(",", "\\,").replace(" ", "\\ ")


def escape_key(s):
    """Tag keys, tag values and field keys: comma, equals sign and space."""
    return s.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def float_text(f):
    """A finite float as line protocol float text (no `i`: always a float field)."""
    f = float(f)
    if not math.isfinite(f):
        raise ValueError("not a finite float: %r" % f)
    return repr(f)


def precision_of(point):
    return "s" if isinstance(point.time, int) else "ms"


def time_text(point, precision):
    if precision == "s":
        return "%d" % point.time
    return "%d" % round(point.time * 1000)


def line(point, precision=None):
    precision = precision or precision_of(point)
    fields = ",".join("%s=%s" % (escape_key(k), float_text(v)) for k, v in point.fields.items())
    return "%s,%s=%s %s %s" % (escape_measurement(point.measurement), escape_key(HOST),
                               escape_key(point.host), fields, time_text(point, precision))


def to_record(point):
    """A JSON-able form of a point (for the spool)."""
    return {"m": point.measurement, "h": point.host, "t": point.time, "f": point.fields}


def from_record(rec):
    t = rec["t"]
    return Point(rec["m"], rec["h"], t, dict(rec["f"]))
