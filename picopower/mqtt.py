"""The host's one MQTT client: what `simulate`, `deploy` and the tests all use.

`Client` wraps paho-mqtt behind the board's interface (connect, publish,
ping, close; see board/lib/board.py), synchronous like the board's umqtt:
`connect()` returns once the broker's CONNACK is in and `publish()` once its
PUBACK is in, else they raise `OSError` with one line that names the broker by
`BrokerUrl.safe` (never the password). So the firmware's link, outbox and
backoff run on the host exactly as on the board. It can also `subscribe()`
and hand each message to `on_message(topic, payload, retained)`.

Two ways to run the network, one class:
- by hand (default): no thread; the socket sits in a `Net` (one selector that
  many clients may share, as a simulated fleet of thousands does) and is read
  while a call waits and whenever the owner calls `Net.poll()`;
- `start()`: paho's own network thread, for a subscriber that must keep
  reading while its owner does something else (a test's listener, deploy
  watching the board's topic).

TLS (mqtts://): the broker's certificate is always verified, against the URL's
CA file (PEM or DER) or else the system's CAs, with its host name checked.

Limits: every wait is bounded by TIMEOUT_S (5 s), like the board's socket
timeout; a QoS 1 publish costs one round trip to the broker.
"""

import select
import selectors
import ssl
import time

from picopower.errors import Unavailable

TIMEOUT_S = 5.0


class Net:
    """One selector over the sockets of any number of hand-driven clients."""

    MISC_EVERY_S = 1.0

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.clients = set()
        self._next_misc = 0.0

    def add(self, client):
        self.clients.add(client)

    def discard(self, client):
        self.clients.discard(client)

    def register(self, sock, client):
        try:
            self.sel.register(sock, selectors.EVENT_READ, client)
        except (KeyError, ValueError):
            pass

    def unregister(self, sock):
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def poll(self, timeout=0.0):
        """Read whatever arrived (messages, PINGRESP, a closed socket) and keep
        every connection alive; waits at most `timeout` seconds for traffic."""
        if self.sel.get_map():
            for key, _ in self.sel.select(max(0.0, timeout)):
                key.data.c.loop_read()
        elif timeout > 0:
            time.sleep(timeout)
        now = time.monotonic()
        if now >= self._next_misc:
            self._next_misc = now + self.MISC_EVERY_S
            for client in list(self.clients):
                client.c.loop_misc()
                if client.c.want_write():
                    client.c.loop_write()


def tls_context(ca_file=""):
    """A client context that verifies the broker: `ca_file` (PEM or DER) or the system's CAs."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        try:
            with open(ca_file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise Unavailable("CA file %s: %s" % (ca_file, e.strerror or e)) from None
        try:
            if b"-----BEGIN" in data:
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=data.decode("ascii", "replace"))
            else:  # the board's DER form (docs/home-assistant.md)
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=data)
        except (ssl.SSLError, ValueError) as e:
            raise Unavailable("CA file %s is not a PEM or DER certificate: %s" % (ca_file, e)) from None
    return ctx


class Client:
    """The board's MQTT client interface over one paho-mqtt connection.

        c = Client(parse_broker("mqtt://127.0.0.1:1883"), "id", will_topic="x/status")
        c.connect(); c.publish("x", b"1", retain=False, qos=1); c.close()
    """

    def __init__(self, url, client_id="", will_topic=None, keepalive=60, net=None, on_message=None,
                 on_publish=None):
        import paho.mqtt.client as mqtt
        self.url = url
        self.net = net if net is not None else Net()
        self.keepalive = keepalive
        self.on_message = on_message
        self.on_publish = on_publish  # called (topic, payload) after each acknowledged publish
        self.connected = False
        self._threaded = False
        self._rc = None
        self._subacks = {}
        self._grab = None  # [topic, payload] while retained() reads a topic
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        c.connect_timeout = TIMEOUT_S
        if url.username:
            c.username_pw_set(url.username, url.password)
        if url.tls:
            c.tls_set_context(tls_context(url.ca_file))
        if will_topic:
            c.will_set(will_topic, b"offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_message = self._on_message
        c.on_socket_open = lambda client, userdata, sock: self.net.register(sock, self)
        c.on_socket_close = lambda client, userdata, sock: self.net.unregister(sock)
        self.c = c

    # --- paho's callbacks --------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, props):
        self._rc = reason
        self.connected = not reason.is_failure

    def _on_disconnect(self, client, userdata, flags, reason, props):
        self.connected = False

    def _on_subscribe(self, client, userdata, mid, reason_codes, props):
        self._subacks[mid] = reason_codes

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, props):
        self._subacks[mid] = reason_codes

    def _on_message(self, client, userdata, msg):
        if self._grab is not None and msg.topic == self._grab[0] and msg.retain:
            self._grab[1] = msg.payload
            return
        if self.on_message is not None:
            self.on_message(msg.topic, msg.payload, bool(msg.retain))

    # --- waiting -----------------------------------------------------------------
    def _wait(self, done, what):
        """Until done(): service this client's socket by hand, or let paho's
        thread do it; OSError after TIMEOUT_S or when the connection drops."""
        deadline = time.monotonic() + TIMEOUT_S
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise OSError("no answer from %s in %.0f s while %s" % (self.url.safe, TIMEOUT_S, what))
            sock = self.c.socket()
            if sock is None:
                raise OSError("connection to %s lost while %s" % (self.url.safe, what))
            if self._threaded:
                time.sleep(0.002)
                continue
            if self.c.want_write():
                self.c.loop_write()
            pending = sock.pending() if hasattr(sock, "pending") else 0
            if pending or _readable(sock, left):
                rc = self.c.loop_read()
                if rc != 0 and not done():
                    raise OSError("connection to %s lost while %s (%s)" % (self.url.safe, what, rc))

    # --- the board's interface -----------------------------------------------------
    def connect(self):
        self.net.add(self)
        try:
            self.c.connect(self.url.host, self.url.port, keepalive=self.keepalive)
            self._wait(lambda: self._rc is not None, "connecting")
        except (OSError, ValueError, ssl.SSLError) as e:
            self.close()
            raise OSError("cannot reach %s: %s" % (self.url.safe, _why(e))) from None
        if self._rc.is_failure:
            self.close()
            raise OSError("%s refused the connection: %s" % (self.url.safe, self._rc))

    def start(self):
        """Hand the connection to paho's network thread (after connect())."""
        self.net.discard(self)
        sock = self.c.socket()
        if sock is not None:
            self.net.unregister(sock)
        self._threaded = True
        self.c.loop_start()

    def subscribe(self, filters, qos=1):
        """Subscribe to one filter or a list; returns once the broker's SUBACK is in."""
        if isinstance(filters, str):
            filters = [filters]
        rc, mid = self.c.subscribe([(f, qos) for f in filters])
        if rc != 0:
            raise OSError("subscribe at %s failed: %s" % (self.url.safe, rc))
        self._wait(lambda: mid in self._subacks, "subscribing")
        codes = self._subacks.pop(mid)
        if any(code.is_failure for code in codes):
            raise OSError("%s refused the subscription to %s" % (self.url.safe, ", ".join(filters)))

    def retained(self, topic):
        """The message retained on `topic` (bytes), or None (board.mqtt_retained).

        Subscribes and unsubscribes at once: the broker answers in order,
        SUBACK, the retained message if there is one, UNSUBACK; so once the
        UNSUBACK is in, whatever was retained has arrived. No waiting on a clock."""
        self._grab = [topic, None]
        try:
            self.subscribe(topic)
            rc, mid = self.c.unsubscribe(topic)
            if rc != 0:
                raise OSError("unsubscribe at %s failed: %s" % (self.url.safe, rc))
            self._wait(lambda: mid in self._subacks, "reading the retained message on %s" % topic)
            self._subacks.pop(mid)
            return bytes(self._grab[1]) if self._grab[1] else None
        finally:
            self._grab = None

    def publish(self, topic, payload, retain=False, qos=1):
        if not self.connected:
            raise OSError("not connected to %s" % self.url.safe)
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            raise OSError("publish to %s failed: %s" % (self.url.safe, info.rc))
        try:
            self._wait(info.is_published, "waiting for PUBACK")
        except (ValueError, RuntimeError, ssl.SSLError) as e:
            raise OSError("publish to %s failed: %s" % (self.url.safe, e)) from None
        if self.on_publish is not None:
            self.on_publish(topic, payload)

    def ping(self):
        pass  # Net.poll (or paho's thread) runs the keepalive

    def close(self):
        self.net.discard(self)
        try:
            if self.connected:
                self.c.disconnect()
        except Exception:  # noqa: BLE001  (closing a broken connection must not raise)
            pass
        if self._threaded:
            self.c.loop_stop()
            self._threaded = False
        sock = self.c.socket()
        if sock is not None:
            self.net.unregister(sock)
        try:
            self.c._sock_close()  # paho's disconnect() only queues the packet
        except Exception:  # noqa: BLE001
            pass
        self.connected = False


def listen(url, filters, on_message, client_id=""):
    """A subscriber on its own network thread, subscribed (SUBACK in) to `filters`;
    `on_message(topic, payload, retained)` for each message. Raises OSError."""
    c = Client(url, client_id, on_message=on_message)
    try:
        c.connect()
        c.start()
        c.subscribe(filters)
    except OSError:
        c.close()
        raise
    return c


def _readable(sock, timeout):
    p = select.poll()  # not select.select: a fleet's sockets go past fd 1024
    p.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(p.poll(int(min(timeout, 0.5) * 1000) + 1))


def _why(e):
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return str(e) or e.__class__.__name__
