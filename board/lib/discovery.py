"""Home Assistant MQTT discovery: power and energy per channel, health as diagnostics.

After each broker connect (when HA_DISCOVERY is on) the board publishes, retained
and at QoS 1, under <node> = "picopower_<board id>":

    <HA_PREFIX>/sensor/<node>/ch<i>_power/config    W,   measurement        (per channel i)
    <HA_PREFIX>/sensor/<node>/ch<i>_energy/config   kWh, total_increasing   (per channel i)
    <HA_PREFIX>/sensor/<node>/<key>/config          diagnostics from the health message

Everything in a topic and a unique_id is what never changes on a board: its
unique id and the channel's position (the energy files follow the position
too). Renaming HOSTNAME or a channel re-publishes the same topics with new
names, so Home Assistant updates its entities in place. A removed channel's
configs, and those of firmware that keyed them by HOSTNAME and channel NAME,
are deleted with an empty retained message on each connect (up to 4 channels:
8 small publishes).

Values do not come from the shared MQTT_TOPIC: Home Assistant restarts a
sensor's expire_after timer on every message on its state topic, so with
several boards on one topic a silent board never expired. The board instead
sends its latest live reading of all channels, once per report window, to its
own topic picopower/<HOSTNAME>/state (QoS 0, not retained, ~40 bytes per
channel), so a board's sensors go unavailable within expire_after of it going
quiet, whatever other boards do. Only live readings go there: a backlog sent
after an outage and revisions stay on MQTT_TOPIC, where they belong (HA stamps
states with its receive time). The seed's messages on MQTT_TOPIC are unchanged.

Every template starts with `value_json is defined`, so a message that is not
JSON renders nothing instead of an error per entity. The health message on the
status topic may be shared by boards, so its templates also check `host`. Every
entity has a unit or a state_class: Home Assistant ignores an empty render only
for such (numeric) sensors, and would blank a text sensor (reset cause is its
number for that reason).

Memory: one config dict at a time is built, dumped, published and dropped.
"""

import json

import message
from health import status_topic

VERSION = "0.2.0"
MANUFACTURER = "picopower"
MODEL = "Pico W meter LED reader"
# Positions whose configs a removal may leave: config.py's CHANNELS limit
# (not imported: the App drops config from the heap after boot).
MAX_CHANNELS = 4

# object suffix, entity name, device_class, unit, state_class
SENSORS = (
    ("power", "Power", "power", "W", "measurement"),
    ("energy", "Energy", "energy", "kWh", "total_increasing"),
)

# health message key, entity name, device_class, unit, state_class
HEALTH = (
    ("uptime_s", "Uptime", "duration", "s", "measurement"),
    ("reset_cause", "Reset cause", None, None, "measurement"),  # 0 power-on, 1 watchdog, 2 reset
    ("resets", "Resets", None, None, "total_increasing"),
    ("heap_free", "Free heap", "data_size", "B", "measurement"),
    ("rssi", "Wi-Fi signal", "signal_strength", "dBm", "measurement"),
    ("queued", "Queued readings", None, None, "measurement"),
    ("dropped", "Dropped readings", None, None, "total_increasing"),
    ("spilled", "Spilled readings", None, None, "total_increasing"),
    ("unstamped", "Unstamped readings", None, None, "total_increasing"),
    ("rejected", "Rejected pulses", None, None, "total_increasing"),
    ("energy_damaged", "Damaged energy files", None, None, "total_increasing"),
)


def safe_id(text):
    """`text` with every character outside [a-zA-Z0-9_-] replaced by '_'."""
    out = []
    for c in text:
        if ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c == "_" or c == "-":
            out.append(c)
        else:
            out.append("_")
    return "".join(out) or "_"


def jinja_text(text):
    """`text` as a single-quoted Jinja string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def node_id(device_id):
    return "picopower_" + safe_id(device_id)


def state_topic(settings):
    """The board's own topic for Home Assistant's sensor values, beside its
    default availability topic (an ACL that lets a board write picopower/<HOSTNAME>/... fits)."""
    return "picopower/%s/state" % safe_id(settings["hostname"])


def expire_after(settings):
    return settings["ha_expire_s"] or 3 * settings["report_interval_s"]


def value_template(key):
    """Reads `key` from the board's state message; nothing from anything else."""
    return "{%% if value_json is defined and value_json.%s is defined %%}{{ value_json.%s }}{%% endif %%}" % (
        key, key)


def health_template(host, key):
    """Reads `key` from this host's health message on a status topic boards may share."""
    return ("{%% if value_json is defined and value_json.host is defined and value_json.host == %s %%}"
            "{{ value_json.%s }}{%% endif %%}") % (jinja_text(host), key)


def _legacy_topics(settings, channels):
    """Where firmware 0.1 put this board's configs (HOSTNAME and channel NAME)."""
    node = safe_id(settings["hostname"])
    used = []
    for ch in channels:
        obj = safe_id(ch.name)
        if obj in used:
            obj = "%s_%d" % (obj, ch.index)
        used.append(obj)
        for s in SENSORS:
            yield "%s/sensor/%s/%s_%s/config" % (settings["ha_prefix"], node, obj, s[0])


def configs(settings, channels, device_id):
    """Yield (topic, config dict or None to delete) for this board, one at a time:
    deletions first, then each channel's sensors, then the diagnostics."""
    prefix = settings["ha_prefix"]
    node = node_id(device_id)
    base = "%s/sensor/%s/" % (prefix, node)
    for topic in _legacy_topics(settings, channels):
        if not topic.startswith(base):
            yield topic, None
    for i in range(len(channels), MAX_CHANNELS):
        for s in SENSORS:
            yield "%sch%d_%s/config" % (base, i, s[0]), None
    host = settings["hostname"]
    device = {
        "identifiers": [node],
        "name": host,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": VERSION,
    }
    common = {
        "availability_topic": settings["availability_topic"],
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "picopower", "sw_version": VERSION},
    }
    single = len(channels) == 1
    topic = state_topic(settings)
    expire = expire_after(settings)
    for ch in channels:
        for suffix, name, device_class, unit, state_class in SENSORS:
            obj = "ch%d_%s" % (ch.index, suffix)
            cfg = {
                "name": name if single else "%s %s" % (name, ch.name),
                "unique_id": "%s_%s" % (node, obj),
                "state_topic": topic,
                "value_template": value_template("%s%d" % (suffix, ch.index)),
                "device_class": device_class,
                "unit_of_measurement": unit,
                "state_class": state_class,
                "expire_after": expire,
            }
            cfg.update(common)
            yield base + obj + "/config", cfg
    health = status_topic(settings)
    for key, name, device_class, unit, state_class in HEALTH:
        cfg = {
            "name": name,
            "unique_id": "%s_%s" % (node, key),
            "state_topic": health,
            "value_template": health_template(host, key),
            "entity_category": "diagnostic",
        }
        if device_class:
            cfg["device_class"] = device_class
        if unit:
            cfg["unit_of_measurement"] = unit
        if state_class:
            cfg["state_class"] = state_class
        cfg.update(common)
        yield base + key + "/config", cfg


def publish_all(client, settings, channels, device_id, feed):
    """Every config (and deletion) in one go, feeding the watchdog between
    publishes; returns how many configs (not deletions). The board itself
    sends them one per loop step (Announcer)."""
    announce = Announcer(settings, channels, device_id)
    while announce(client, feed):
        pass
    return announce.configs


class Announcer:
    """The connect hook: one config (or deletion) per link step, so a slow
    broker (seconds per PUBACK, about 20 publishes) never holds the main loop for
    more than one publish; returns True while configs remain. A new
    connection starts the list again."""

    def __init__(self, settings, channels, device_id):
        self._args = (settings, channels, device_id)
        self._client = None
        self._left = None
        self.configs = 0  # configs (not deletions) sent on the current connection

    def __call__(self, client, feed):
        if client is not self._client or self._left is None:
            self._client = client
            self._left = configs(*self._args)
            self.configs = 0
        for topic, cfg in self._left:
            if cfg is None:
                payload = b""
            else:
                payload = json.dumps(cfg).encode()
                self.configs += 1
            cfg = None
            client.publish(topic, payload, True, 1)
            feed()
            return True
        self._left = None
        self._client = None
        return False


class State:
    """The latest live reading of every channel, sent to the board's state
    topic once per report window (see the module's docstring)."""

    def __init__(self, settings, channels):
        self.topic = state_topic(settings)
        self.imps = [ch.imp for ch in channels]
        self.watts = [0.0] * len(channels)
        self.pulses = [-1] * len(channels)  # -1: no reading yet
        self.fresh = False

    def reading(self, index, mono_ms, watts, pulses, kind):
        """App.on_reading hook: keep live readings (kind 0), not revisions."""
        if kind == 0:
            self.watts[index] = watts
            self.pulses[index] = pulses
            self.fresh = True

    def payload(self):
        parts = []
        for i in range(len(self.imps)):
            if self.pulses[i] >= 0:
                parts.append('"power%d": %s, "energy%d": %s' % (
                    i, message.power_text(self.watts[i]), i, message.kwh_text(self.pulses[i], self.imps[i])))
        return "{" + ", ".join(parts) + "}"

    def publish(self, client):
        """Link.on_online hook: send the newest readings once, QoS 0 (a lost
        one is replaced in one report interval; no PUBACK round trip)."""
        if self.fresh:
            client.publish(self.topic, self.payload().encode(), False, 0)
            self.fresh = False
