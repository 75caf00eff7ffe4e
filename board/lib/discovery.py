"""Home Assistant MQTT discovery: a power and an energy sensor per channel.

After each broker connect (when HA_DISCOVERY is on) the board publishes, for
every channel, two retained QoS 1 configs:

    <HA_PREFIX>/sensor/<node>/<channel>_power/config    W,   measurement
    <HA_PREFIX>/sensor/<node>/<channel>_energy/config   kWh, total_increasing

<node> is HOSTNAME and <channel> the channel's NAME, each cut down to the
characters Home Assistant allows in ids ([a-zA-Z0-9_-], others become "_").
The seed's JSON on MQTT_TOPIC is not changed: the sensors read it with a
value_template. Several channels (and several boards) may share that topic,
so each template keeps only the messages whose `measurement` and `host` are
this channel's; for any other message it renders an empty string, which Home
Assistant ignores for a numeric sensor (it keeps the last value).

The unique_id is made of the board's unique id and the channel name, so a
reboot re-publishes the same configs to the same topics: no new entities.
Availability is the last-will topic ("online" / "offline", retained), and
expire_after (HA_EXPIRE_S, default three report intervals) marks a sensor
unavailable when readings stop while the link still looks up.

Memory: one config dict at a time is built, dumped, published and dropped.
"""

import json

VERSION = "0.1.0"
MANUFACTURER = "picopower"
MODEL = "Pico W meter LED reader"

# object suffix, JSON key, device_class, unit, state_class, label
SENSORS = (
    ("power", "power", "power", "W", "measurement", "Power"),
    ("energy", "energy", "energy", "kWh", "total_increasing", "Energy"),
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


def template(series, host, key):
    """A value_template reading `key` only from this channel's messages."""
    return ("{%% if value_json.measurement == %s and value_json.host == %s %%}"
            "{{ value_json.%s }}{%% endif %%}") % (jinja_text(series), jinja_text(host), key)


def expire_after(settings):
    return settings["ha_expire_s"] or 3 * settings["report_interval_s"]


def configs(settings, channels, device_id):
    """Yield (topic, config dict) for every sensor of every channel, one at a time."""
    host = settings["hostname"]
    node = safe_id(host)
    prefix = settings["ha_prefix"]
    device = {
        "identifiers": ["picopower_" + safe_id(device_id)],
        "name": host,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": VERSION,
    }
    expire = expire_after(settings)
    single = len(channels) == 1
    used = []
    for ch in channels:
        obj = safe_id(ch.name)
        if obj in used:
            # Two names that differ only in characters ids cannot hold.
            obj = "%s_%d" % (obj, ch.index)
        used.append(obj)
        for suffix, key, device_class, unit, state_class, label in SENSORS:
            object_id = obj + "_" + suffix
            cfg = {
                "name": label if single else "%s %s" % (ch.name, label.lower()),
                "unique_id": "picopower_%s_%s" % (safe_id(device_id), object_id),
                "state_topic": settings["mqtt_topic"],
                "value_template": template(ch.series, host, key),
                "device_class": device_class,
                "unit_of_measurement": unit,
                "state_class": state_class,
                "availability_topic": settings["availability_topic"],
                "payload_available": "online",
                "payload_not_available": "offline",
                "expire_after": expire,
                "qos": 1,
                "device": device,
                "origin": {"name": "picopower", "sw_version": VERSION},
            }
            yield "%s/sensor/%s/%s/config" % (prefix, node, object_id), cfg


def publish_all(client, settings, channels, device_id):
    """Publish every channel's configs, retained, QoS 1; return how many."""
    n = 0
    for topic, cfg in configs(settings, channels, device_id):
        payload = json.dumps(cfg).encode()
        cfg = None
        client.publish(topic, payload, True, 1)
        payload = None
        n += 1
    return n
