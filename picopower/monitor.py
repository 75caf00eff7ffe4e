"""Every meter seen on a topic: latest watts, energy, today's kWh, last seen, online/offline.

`Meters` is the pure part: `handle(topic, payload, now)` takes any message
(garbage included: it is counted, never raised) and keeps one `Meter` per
(host, measurement) from the seed-format readings, and each host's
availability from `picopower/<host>/status` (`online` / `offline`, retained,
the last will). A message on a `.../revised` topic is a board's exact value
for a past reading: it replaces that reading in the history (the sparkline
shows what is stored) and leaves the current watts alone. `Monitor` feeds it
from a real broker with paho-mqtt, subscribed to each topic's revisions too.

The table itself is drawn by picopower.dashboard.
"""

import json
import math
import threading
import time
from collections import deque
from datetime import datetime

from picopower.errors import Unavailable

STATUS_FILTER = "picopower/+/status"
REVISED = "/revised"
HISTORY = 240


class Meter:
    def __init__(self, host, series):
        self.host = host
        self.series = series
        self.watts = None
        self.energy = None       # kWh since installation (the firmware's `energy`)
        self.timestamp = None    # the reading's own time (unix s)
        self.last_seen = None    # when this PC received it (unix s)
        self.count = 0
        self.revised = 0
        self.history = deque(maxlen=HISTORY)  # (timestamp, watts), revised where the board sent one
        self._day = None
        self._day_start = None   # energy at the first reading of the reading's day

    def update(self, watts, timestamp, energy, now):
        self.watts = watts
        self.timestamp = timestamp
        self.last_seen = now
        self.count += 1
        self.history.append((timestamp, watts))
        if energy is not None:
            day = datetime.fromtimestamp(timestamp).date() if timestamp is not None else None
            if day != self._day or self._day_start is None or energy < self._day_start:
                self._day = day
                self._day_start = energy
            self.energy = energy

    def revise(self, watts, timestamp):
        """The board's exact value for the reading at `timestamp`."""
        for i in range(len(self.history) - 1, -1, -1):
            if self.history[i][0] == timestamp:
                self.history[i] = (timestamp, watts)
                self.revised += 1
                return

    @property
    def today_kwh(self):
        """kWh since the first reading of the current day seen here."""
        if self.energy is None or self._day_start is None:
            return None
        return self.energy - self._day_start


def _number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        v = float(v)
    elif isinstance(v, str):  # the seed's README shows quoted values; old boards may send them
        try:
            v = float(v)
        except ValueError:
            return None
    else:
        return None
    return v if math.isfinite(v) else None


class Meters:
    def __init__(self, status_filter=STATUS_FILTER):
        self.meters = {}
        self.status = {}         # host -> "online" / "offline"
        self.status_prefix, _, self.status_suffix = status_filter.partition("+")
        self.messages = 0
        self.garbage = 0
        self.last_garbage = ""
        self.lock = threading.Lock()

    def _bad(self, topic, why):
        self.garbage += 1
        self.last_garbage = "%s: %s" % (topic, why)

    def handle(self, topic, payload, now=None):
        now = time.time() if now is None else now
        with self.lock:
            self.messages += 1
            if isinstance(payload, (bytes, bytearray)):
                try:
                    payload = payload.decode("utf-8")
                except UnicodeDecodeError:
                    return self._bad(topic, "not UTF-8")
            if topic.startswith(self.status_prefix) and topic.endswith(self.status_suffix) and \
                    len(topic) > len(self.status_prefix) + len(self.status_suffix):
                host = topic[len(self.status_prefix):len(topic) - len(self.status_suffix)]
                state = payload.strip().lower()
                if state in ("online", "offline"):
                    self.status[host] = state
                elif state == "":
                    self.status.pop(host, None)  # retained message cleared
                else:
                    self._bad(topic, "status is neither online nor offline")
                return
            try:
                data = json.loads(payload)
            except ValueError:
                return self._bad(topic, "not JSON")
            if not isinstance(data, dict):
                return self._bad(topic, "not a JSON object")
            watts = _number(data.get("power"))
            host = data.get("host")
            if watts is None or not isinstance(host, str) or not host:
                return self._bad(topic, "no numeric power and host")
            series = data.get("measurement")
            series = series if isinstance(series, str) else ""
            ts = _number(data.get("timestamp"))
            energy = _number(data.get("energy"))
            key = (host, series)
            m = self.meters.get(key)
            if topic.endswith(REVISED):
                if m is not None:
                    m.revise(watts, ts)
                return
            if m is None:
                m = self.meters[key] = Meter(host, series)
            m.update(watts, ts, energy, now)

    def rows(self):
        """The meters, sorted by host then series, with their host's availability."""
        with self.lock:
            return [(m, self.status.get(m.host)) for _, m in sorted(self.meters.items())]

    def hosts_without_readings(self):
        with self.lock:
            seen = {h for h, _ in self.meters}
            return sorted((h, s) for h, s in self.status.items() if h not in seen)


class Monitor:
    """Meters fed from a broker: subscribes to the data topic(s) and the status topics."""

    def __init__(self, url, topics, status_filter=STATUS_FILTER, meters=None, client_id=""):
        import paho.mqtt.client as mqtt
        self.url = url
        from picopower.configs import with_revisions
        self.topics = with_revisions(topics)
        self.status_filter = status_filter
        self.meters = meters or Meters(status_filter)
        self._connected = threading.Event()
        self._rc = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if url.username:
            c.username_pw_set(url.username, url.password)
        if url.tls:
            import ssl
            c.tls_set(ca_certs=url.ca_file or None, cert_reqs=ssl.CERT_REQUIRED if url.ca_file else ssl.CERT_NONE)
            if not url.ca_file:
                c.tls_insecure_set(True)
        c.on_connect = self._on_connect
        c.on_message = lambda client, userdata, msg: self.meters.handle(msg.topic, msg.payload)
        self.client = c

    def _on_connect(self, client, userdata, flags, reason, props):
        self._rc = reason
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self.topics + [self.status_filter]])
        self._connected.set()

    def start(self, timeout=5.0):
        try:
            self.client.connect(self.url.host, self.url.port, 30)
        except (OSError, ValueError) as e:
            raise Unavailable("cannot reach the broker %s: %s" % (self.url.safe, e)) from None
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise Unavailable("no answer from the broker %s in %.0f s" % (self.url.safe, timeout))
        if self._rc.is_failure:
            self.stop()
            raise Unavailable("the broker %s refused the connection: %s" % (self.url.safe, self._rc))
        return self

    def stop(self):
        try:
            self.client.disconnect()
        except Exception:
            pass
        self.client.loop_stop()
