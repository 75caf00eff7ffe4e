"""The bridge's intake: one persistent MQTT session that hands messages over
unacknowledged and acknowledges each one only when told it is stored.

The session is persistent (clean_session False, a stable client id, QoS 1
subscriptions) and acknowledgements are manual (paho-mqtt 2 `manual_ack`):
whatever the bridge has not acknowledged when it dies, the broker sends again
when the same client id comes back. paho's network thread only puts
`(mid, qos, payload, topic)` on `queue`; another thread takes them.

With `share=GROUP` every filter becomes `$share/GROUP/<filter>`: the broker
hands each message to one member of the group (Mosquitto 2 round-robins,
counting members whose session is offline, whose share then waits for them).
paho 2 passes such filters through, but its `topic_matches_sub` and
`message_callback_add` do not understand them, so every message arrives in
the one `on_message` here, whatever its filter.
"""

import logging
import queue
import threading

import paho.mqtt.client as mqtt

from picopower.errors import UserError


class BridgeError(UserError, OSError):
    """A one-line start-up failure: broker or database unreachable, refused, ..."""


def shared(topic_filter, group):
    """`$share/GROUP/<filter>` (MQTT 5 shared subscription, also offered to 3.1.1 clients by Mosquitto 2)."""
    if not group:
        return topic_filter
    if any(c in group for c in "/+#") or not group.strip():
        raise BridgeError("--share needs a group name without / + #, got %r" % group)
    return "$share/%s/%s" % (group, topic_filter)


class Intake:
    CONNECT_TIMEOUT_S = 10.0

    def __init__(self, url, topics, client_id, qos=1, share=None, log=None):
        self.url = url
        self.topics = list(topics)
        self.filters = [shared(t, share) for t in self.topics]
        self.client_id = client_id
        self.qos = qos
        self.log = log or logging.getLogger("picopower.bridge")
        self.queue = queue.Queue()
        self.accepting = False
        self._client = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._connack = None
        self._suback_failure = ""

    def start(self):
        """Connects and subscribes; BridgeError (one line) if the broker is unreachable or refuses."""
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False,
                        manual_ack=True)
        if self.url.username:
            c.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            try:
                c.tls_set(ca_certs=self.url.ca_file or None)
            except (OSError, ValueError) as e:
                raise BridgeError("cannot use CA file %r: %s" % (self.url.ca_file, e)) from None
        c.reconnect_delay_set(1, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._client = c
        self.accepting = True
        safe = self.url.safe
        try:
            c.connect(self.url.host, self.url.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise BridgeError("cannot reach broker %s: %s" % (safe, e)) from None
        c.loop_start()
        if not self._connected.wait(self.CONNECT_TIMEOUT_S):
            raise BridgeError("no answer from broker %s in %.0f s" % (safe, self.CONNECT_TIMEOUT_S))
        if self._connack is not None and self._connack.is_failure:
            raise BridgeError("broker %s refused the connection: %s" % (safe, self._connack))
        if not self._subscribed.wait(self.CONNECT_TIMEOUT_S):
            raise BridgeError("broker %s did not confirm the subscription in %.0f s"
                              % (safe, self.CONNECT_TIMEOUT_S))
        if self._suback_failure:
            raise BridgeError("broker %s refused the subscription to %s: %s"
                              % (safe, ",".join(self.filters), self._suback_failure))
        return self

    def stop_taking(self):
        """From now on messages are left unacknowledged: the broker sends them again next session."""
        self.accepting = False

    def close(self):
        self.accepting = False
        c, self._client = self._client, None
        if c is not None:
            try:
                c.disconnect()
            except Exception:  # noqa: BLE001  (closing: the connection may be gone already)
                pass
            c.loop_stop()

    @property
    def connected(self):
        return self._client is not None and self._client.is_connected()

    def ack(self, items):
        """Acknowledges queued items `(mid, qos, payload, topic)`, once their points are stored."""
        c = self._client
        if c is None:
            return
        for mid, qos, _, _ in items:
            if qos > 0:
                c.ack(mid, qos)

    # -- paho callbacks (network thread) --------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, props):
        self._connack = reason
        if not reason.is_failure:
            client.subscribe([(f, self.qos) for f in self.filters])
            self.log.info("connected to %s (session present: %s)", self.url.safe,
                          getattr(flags, "session_present", "?"))
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, props):
        self._suback_failure = ", ".join(str(rc) for rc in reason_codes if rc.is_failure)
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason, props):
        if self.accepting:
            self.log.warning("broker %s disconnected (%s); reconnecting", self.url.safe, reason)

    def _on_message(self, client, userdata, msg):
        if self.accepting:
            self.queue.put((msg.mid, msg.qos, msg.payload, msg.topic))
