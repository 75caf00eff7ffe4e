"""Settings: one table of names, defaults and rules, checked in one pass.

The user's `lib/secrets.py` (the seed's file, unchanged) overlays the
defaults. `check()` returns every problem at once as one line each, in words
a user can act on (`MQTT_PORT must be an integer 1-65535, got '18a3'`), so the
board can show them and wait instead of crashing into a reboot loop. The host
uses the same function to validate what `picopower deploy` writes.

What is valid is decided once, here, for the board and the host alike: the
bridge (picopower/lineproto.py) takes HOSTNAME and SERIESNAME through
`name_problem`, so any name the board accepts is a name the bridge stores.

Several meters on one board: `CHANNELS`, a list of dicts whose keys are the
per-channel names below; a key left out takes the top-level value. Without
`CHANNELS` the board has one channel made of the seed's names.
"""

from pulses import min_gap_us, MAX_GAP_US

REQUIRED = "required"

# The longest a blocking network step may take (board.STEP_MS must not exceed
# it); the watchdog must outlast one such step plus the rest of a loop pass.
NETWORK_STEP_MS = 5000
MIN_WATCHDOG_MS = NETWORK_STEP_MS + 2000
NAME_MAX = 64

# name: (default, kind, argument)
SETTINGS = {
    # The seed's names.
    "WIFI_SSID": (REQUIRED, "ssid", 32),
    "WIFI_PASS": ("", "wifi_pass", None),
    "MQTT_SERVER": (REQUIRED, "host", None),
    "MQTT_PORT": (1883, "int", (1, 65535)),
    "HOSTNAME": ("picopower", "name", NAME_MAX),
    "SERIESNAME": ("power", "series", NAME_MAX),
    "MQTT_TOPIC": (REQUIRED, "topic", None),
    # The meter and its sensor.
    "IMP_PER_KWH": (1000, "int", (1, 100000)),
    "PULSE_PIN": (22, "pin", None),
    "PULSE_PULL": ("up", "choice", ("up", "down", "none")),
    "PULSE_EDGE": ("falling", "choice", ("falling", "rising")),
    "MAX_POWER_W": (24000, "int", (100, 1000000)),
    "PULSE_WIDTH_MIN_MS": (0, "num", (0, 2000)),
    "PULSE_WIDTH_MAX_MS": (0, "num", (0, 2000)),
    "CHANNELS": (None, "channels", 4),
    # Readings.
    "REPORT_INTERVAL_S": (10, "int", (1, 3600)),
    "POWER_TIMEOUT_S": (300, "int", (10, 86400)),
    "PERSIST_INTERVAL_S": (60, "int", (60, 86400)),  # a power cut loses at most this (bench/wear.py)
    "QUEUE_SIZE": (2880, "int", (16, 20000)),
    # Network.
    "WIFI_TIMEOUT_S": (20, "int", (5, 300)),
    "NTP_HOST": ("pool.ntp.org", "host", None),
    "NTP_INTERVAL_S": (3600, "int", (60, 86400)),
    "MQTT_USER": ("", "text", 128),
    "MQTT_PASS": ("", "secret", 128),
    "MQTT_CLIENT_ID": ("", "text", 64),
    "MQTT_KEEPALIVE": (60, "int", (10, 3600)),
    "MQTT_TLS": (False, "bool", None),
    "MQTT_CA_FILE": ("", "text", 128),
    "MQTT_CERT_SHA256": ("", "text", 95),  # pin the broker's certificate (hex, colons allowed)
    "AVAILABILITY_TOPIC": ("", "topic_or_empty", None),
    # Retained health message (health.py); "": "<MQTT_TOPIC>/status".
    "STATUS_TOPIC": ("", "topic_or_empty", None),
    # Exact means of past windows (revisions.py); None: "<MQTT_TOPIC>/revised", "": off.
    "REVISION_TOPIC": (None, "topic_or_empty", None),
    "HA_DISCOVERY": (False, "bool", None),
    "HA_PREFIX": ("homeassistant", "topic", None),
    "HA_EXPIRE_S": (0, "int", (0, 86400)),
    # The board.
    "WATCHDOG_MS": (8000, "watchdog", (MIN_WATCHDOG_MS, 8388)),
    "STATUS_LED": (True, "bool", None),
}

# Per channel: these names, falling back to the top-level ones.
CHANNEL_KEYS = {
    "PIN": "PULSE_PIN",
    "PULL": "PULSE_PULL",
    "EDGE": "PULSE_EDGE",
    "IMP_PER_KWH": "IMP_PER_KWH",
    "MAX_POWER_W": "MAX_POWER_W",
    "PULSE_WIDTH_MIN_MS": "PULSE_WIDTH_MIN_MS",
    "PULSE_WIDTH_MAX_MS": "PULSE_WIDTH_MAX_MS",
    "SERIESNAME": "SERIESNAME",
    "NAME": None,
}

# GP23-25 and GP29 drive the Pico W's radio and are not on the header.
FREE_PINS = tuple(range(0, 23)) + (26, 27, 28)


def _shown(value):
    if isinstance(value, str):
        if _bad_text(value) or [c for c in value if _unprintable(c)]:
            return repr(value)  # escapes newlines: the message stays one line
        return "'%s'" % value
    return repr(value)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _bad_text(v):
    for c in v:
        if ord(c) < 32 or ord(c) == 127:
            return True
    return False


# Characters no name may hold: C0/C1 controls and DEL, and the invisible or
# line-breaking ones (zero-width, bidi controls, line/paragraph separators,
# BOM, surrogates, non-characters) that look like nothing in a dashboard and
# break line-based formats.
_UNPRINTABLE = ((0x00, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x200B, 0x200F), (0x2028, 0x202E),
                (0x2060, 0x206F), (0xD800, 0xDFFF), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0xFFFE, 0xFFFF))


def _unprintable(c):
    o = ord(c)
    for lo, hi in _UNPRINTABLE:
        if lo <= o <= hi:
            return True
    return False


def name_problem(value, measurement=False):
    """Why `value` cannot be a HOSTNAME (an InfluxDB tag value) or, with
    `measurement`, a SERIESNAME (the measurement): a short fixed phrase, or
    None. Line protocol cannot end a name with a backslash and reads a line
    starting with '#' as a comment; Telegraf and dashboards choke on controls."""
    if not isinstance(value, str):
        return "is not a string"
    if not value.strip():
        return "is empty"
    if len(value) > NAME_MAX:
        return "is too long"
    for c in value:
        if _unprintable(c):
            return "has control characters"
    if "\\" in value:
        return "has a backslash"
    if measurement and value[0] == "#":
        return "starts with #"
    return None


def _utf8_len(v):
    try:
        return len(v.encode("utf-8"))
    except UnicodeError:
        return -1


def _is_hex(v):
    for c in v:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _problem(name, value, kind, arg):
    """One line describing why `value` is wrong for `name`, or None."""
    if kind == "int":
        lo, hi = arg
        if not _is_int(value) or not lo <= value <= hi:
            return "%s must be an integer %d-%d, got %s" % (name, lo, hi, _shown(value))
    elif kind == "num":
        lo, hi = arg
        if not (_is_int(value) or isinstance(value, float)) or not lo <= value <= hi:
            return "%s must be a number %s-%s, got %s" % (name, lo, hi, _shown(value))
    elif kind == "bool":
        if not isinstance(value, bool):
            return "%s must be True or False, got %s" % (name, _shown(value))
    elif kind == "choice":
        if value not in arg:
            return "%s must be one of %s, got %s" % (name, ", ".join(arg), _shown(value))
    elif kind == "watchdog":
        lo, hi = arg
        if not _is_int(value) or not (value == 0 or lo <= value <= hi):
            return ("%s must be 0 (off) or an integer %d-%d: it must outlast a network step of up to %d ms,"
                    " got %s" % (name, lo, hi, NETWORK_STEP_MS, _shown(value)))
    elif kind == "ssid":
        if not isinstance(value, str):
            return "%s must be text in quotes, got %s" % (name, _shown(value))
        n = _utf8_len(value)
        if not value or n < 0 or n > arg or _bad_text(value):
            return ("%s must be 1-%d bytes of printable text (UTF-8: accented letters take 2 bytes), got %d"
                    " bytes" % (name, arg, max(n, 0)))
    elif kind == "wifi_pass":
        if not isinstance(value, str):
            return "%s must be text in quotes (value not shown)" % name
        n = _utf8_len(value)
        if n == 64 and _is_hex(value):
            return None
        if _bad_text(value) or n < 0 or not (n == 0 or 8 <= n <= 63):
            return ("%s must be empty (open network), 8-63 printable characters or 64 hex digits (WPA2),"
                    " got %d bytes (value not shown)" % (name, max(n, 0)))
    elif kind in ("name", "series"):
        problem = name_problem(value, kind == "series")
        if problem == "is not a string":
            return "%s must be text in quotes, got %s" % (name, _shown(value))
        if problem == "is too long":
            return "%s must be at most %d characters, got %d" % (name, arg, len(value))
        if problem:
            return "%s %s, got %s: it names the readings in InfluxDB" % (name, problem, _shown(value))
    elif kind == "pin":
        if not _is_int(value) or value not in FREE_PINS:
            return "%s must be a free GPIO number (0-22, 26-28), got %s" % (name, _shown(value))
    elif kind in ("text", "secret"):
        if not isinstance(value, str):
            if kind == "secret":
                return "%s must be text in quotes (value not shown)" % name
            return "%s must be text in quotes, got %s" % (name, _shown(value))
        if len(value) > arg:
            return "%s must be at most %d characters, got %d" % (name, arg, len(value))
        if _bad_text(value):
            return "%s must not contain control characters or newlines" % name
    elif kind == "host":
        if not isinstance(value, str) or not value or len(value) > 253:
            return "%s must be a host name or IP address, got %s" % (name, _shown(value))
        for c in value:
            if not (c.isalpha() or c.isdigit() or c in ".-_:"):
                return "%s must be a host name or IP address, got %s" % (name, _shown(value))
    elif kind in ("topic", "topic_or_empty"):
        if not isinstance(value, str):
            return "%s must be an MQTT topic in quotes, got %s" % (name, _shown(value))
        if kind == "topic_or_empty" and value == "":
            return None
        if not value or len(value) > 200 or _bad_text(value):
            return "%s must be an MQTT topic of 1-200 printable characters, got %s" % (name, _shown(value))
        if "+" in value or "#" in value:
            return "%s must not contain the wildcards + or #, got %s" % (name, _shown(value))
    return None


def _channels(raw, top, errors):
    """The list of channel dicts (lower-case keys), top-level values filled in."""
    implicit = raw is None
    if implicit:
        raw = [{}]
    elif not isinstance(raw, (list, tuple)) or not raw or len(raw) > SETTINGS["CHANNELS"][2]:
        errors.append("CHANNELS must be a list of 1-%d dicts, got %s" % (SETTINGS["CHANNELS"][2], _shown(raw)))
        return []
    out = []
    pins = []
    series = []
    names = []
    for i, spec in enumerate(raw):
        where = "" if implicit else "CHANNELS[%d]" % i
        if not isinstance(spec, dict):
            errors.append("%s must be a dict like {'PIN': 22, 'IMP_PER_KWH': 1000}, got %s" % (where, _shown(spec)))
            continue
        for key in spec:
            if key not in CHANNEL_KEYS:
                errors.append("%s has unknown key %s (known: %s)" % (where, _shown(key), ", ".join(CHANNEL_KEYS)))
        ch = {}
        for key, top_name in CHANNEL_KEYS.items():
            if top_name is None:
                continue
            if key in spec:
                value = spec[key]
                _, kind, arg = SETTINGS[top_name]
                problem = _problem(where + "." + key, value, kind, arg)
                if problem:
                    errors.append(problem)
                    continue
            else:
                value = top[top_name]
            ch[key.lower()] = value
        name = spec.get("NAME", ch.get("seriesname", "power"))
        problem = _problem(where + ".NAME", name, "name", 64)
        if problem:
            errors.append(problem)
        ch["name"] = name
        if ch.get("pin") in pins:
            errors.append("%s.PIN %s is already used by another channel" % (where, ch.get("pin")))
        if "seriesname" in ch and ch["seriesname"] in series:
            errors.append("%s.SERIESNAME %s is already used by another channel (each channel's messages are"
                          " told apart by it)" % (where, _shown(ch["seriesname"])))
        elif name in names:
            errors.append("%s.NAME %s is already used by another channel" % (where, _shown(name)))
        pins.append(ch.get("pin"))
        series.append(ch.get("seriesname"))
        names.append(name)
        _check_width(ch, where + "." if where else "", errors)
        _check_gap(ch, where + "." if where else "", errors)
        out.append(ch)
    return out


def _check_width(ch, where, errors):
    wmin = ch.get("pulse_width_min_ms", 0)
    wmax = ch.get("pulse_width_max_ms", 0)
    if wmax and wmin > wmax:
        errors.append("%sPULSE_WIDTH_MIN_MS (%s) must not exceed PULSE_WIDTH_MAX_MS (%s)" % (where, wmin, wmax))
    if wmin and not wmax:
        errors.append("%sPULSE_WIDTH_MIN_MS needs PULSE_WIDTH_MAX_MS too (0 turns the width filter off)" % where)


def _check_gap(ch, where, errors):
    imp = ch.get("imp_per_kwh")
    watts = ch.get("max_power_w")
    if imp is None or watts is None:
        return
    gap = min_gap_us(imp, watts)
    if gap > MAX_GAP_US:
        errors.append("%sIMP_PER_KWH %d with MAX_POWER_W %d means pulses at least %d s apart; the ghost filter"
                      " can keep at most %d s: raise MAX_POWER_W to %d or more" % (
                          where, imp, watts, gap // 1000000, MAX_GAP_US // 1000000,
                          -(-3600000000000 // (imp * MAX_GAP_US))))


def check(values, required=True):
    """(settings, errors, warnings) for a dict of user values.

    Settings have lower-case keys plus `channels`; errors and warnings are
    lists of one-line messages. With `required` False (the host's virtual
    board) the Wi-Fi and broker names may be missing.
    """
    errors = []
    warnings = []
    top = {}
    for name in sorted(SETTINGS):
        default, kind, arg = SETTINGS[name]
        if name in values:
            value = values[name]
        elif default == REQUIRED and required:
            errors.append("%s is missing: add %s = ... to lib/secrets.py" % (name, name))
            continue
        else:
            top[name] = None if default == REQUIRED else default
            continue
        problem = _problem(name, value, kind, arg)
        if problem:
            errors.append(problem)
        else:
            top[name] = value
    for name in values:
        if name not in SETTINGS and name.isupper() and not name.startswith("_"):
            warnings.append("%s is not a setting this firmware knows; ignored" % name)
    for name, (default, _, _) in SETTINGS.items():
        top.setdefault(name, None if default == REQUIRED else default)
    channels = _channels(top["CHANNELS"], top, errors)
    settings = {}
    for name, value in top.items():
        settings[name.lower()] = value
    settings["channels"] = channels
    if not settings["availability_topic"]:
        host = settings["hostname"]
        if "+" in host or "#" in host or "/" in host:
            errors.append("HOSTNAME %s cannot be part of the default AVAILABILITY_TOPIC picopower/<HOSTNAME>/status:"
                          " remove + # / from it or set AVAILABILITY_TOPIC" % _shown(host))
        settings["availability_topic"] = "picopower/%s/status" % host
    if settings["revision_topic"] is None and settings["mqtt_topic"]:
        settings["revision_topic"] = settings["mqtt_topic"] + "/revised"
    if settings["revision_topic"] and settings["revision_topic"] == settings["mqtt_topic"]:
        errors.append("REVISION_TOPIC must differ from MQTT_TOPIC (Home Assistant would show revisions as the"
                      " current power); set it to \"\" to turn revisions off")
        settings["revision_topic"] = settings["mqtt_topic"] + "/revised"
    if settings["mqtt_pass"] and not settings["mqtt_user"]:
        errors.append("MQTT_PASS is set but MQTT_USER is empty")
    return settings, errors, warnings


def from_module(module, required=True):
    """check() over the upper-case names of a module such as `secrets`."""
    values = {}
    for name in dir(module):
        if name.isupper():
            values[name] = getattr(module, name)
    return check(values, required)
