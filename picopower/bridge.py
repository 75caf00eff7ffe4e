"""The bridge: MQTT readings into InfluxDB 1.x or SQLite, what Telegraf does in the seed.

    b = Bridge("mqtt://127.0.0.1:1883", ["power"], InfluxSink("http://127.0.0.1:8086", "telegraf"),
               spool_dir="/var/lib/picopower/spool")
    b.start()            # raises BridgeError (one line) if the broker or database is unreachable
    ...
    b.counters()         # {"received": .., "written": .., "rejected": .., "rejected_by_reason": {..}, ..}
    b.stop()

Delivery is at least once. The MQTT session is persistent (clean_session
False, a stable client id, QoS 1 subscriptions), acknowledgements are manual
(paho-mqtt 2 `manual_ack`), and a message is acknowledged only after its
point is stored: written to the database, or appended (fsync'ed) to the spool
while the database is down. Rejected messages are acknowledged (they can
never be written). If the spool is full or absent and the database is down,
nothing is acknowledged: the broker keeps the messages and, with at most its
in-flight window unacknowledged, stops sending more. Spooled points are
written back oldest first when the database answers again; while the spool
is not empty new points queue behind it, so the order is kept.

One worker thread does all parsing, writing and spooling; paho's network
thread only queues messages.
"""

import logging
import queue
import socket
import threading
import time

import paho.mqtt.client as mqtt

from picopower.lineproto import Rejected, from_record, parse, to_record
from picopower.sinks import SinkDown, SinkRejected
from picopower.spool import Spool, SpoolFull
from picopower.urls import parse_broker

log = logging.getLogger("picopower.bridge")

MAX_BATCH = 500
MAX_BATCH_AGE_S = 1.0


class BridgeError(OSError):
    """A one-line start-up failure: broker or database unreachable, refused, ..."""


def default_client_id():
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-_")[:40]
    return "picopower-bridge-" + (host or "host")


class Bridge:
    CONNECT_TIMEOUT_S = 10.0

    def __init__(self, broker, topics, sink, spool_dir=None, spool_max_bytes=100 * 1024 * 1024,
                 client_id=None, ca_file="", qos=1, max_batch=MAX_BATCH, retry_s=1.0,
                 max_retry_s=10.0, stats_interval=0, stats_out=None, reject_log_per_s=10):
        self.url = parse_broker(broker, ca_file) if isinstance(broker, str) else broker
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        if not self.topics:
            raise ValueError("at least one --topic is needed")
        self.sink = sink
        self.spool = Spool(spool_dir, spool_max_bytes) if spool_dir else None
        self.client_id = client_id or default_client_id()
        self.qos = qos
        self.max_batch = max_batch
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.stats_interval = stats_interval
        self.stats_out = stats_out
        self.reject_log_per_s = reject_log_per_s
        self._q = queue.Queue()
        self._lock = threading.Lock()
        self._c = {"received": 0, "written": 0, "rejected": 0, "spooled": 0, "db_rejected": 0,
                   "acked": 0}
        self._reasons = {}
        self._accepting = False
        self._stopping = threading.Event()
        self._worker = None
        self._client = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._connack = None
        self._sink_down = False
        self._retry_at = 0.0
        self._backoff = retry_s
        self._last_stats = time.monotonic()
        self._log_budget = (time.monotonic(), 0)
        self._suback_failure = ""
        self.error = None  # a fatal error in the worker, if any

    # -- public ---------------------------------------------------------------------------
    def start(self):
        try:
            self.sink.check()
        except (SinkDown, OSError) as e:
            raise BridgeError(str(e)) from None
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
        self._accepting = True
        self._worker = threading.Thread(target=self._run, name="bridge-worker", daemon=True)
        self._worker.start()
        try:
            c.connect(self.url.host, self.url.port, keepalive=30)
        except (OSError, ValueError) as e:
            self._abort()
            raise BridgeError("cannot reach broker %s: %s" % (self.url.safe, e)) from None
        c.loop_start()
        if not self._connected.wait(self.CONNECT_TIMEOUT_S):
            self._abort()
            raise BridgeError("no answer from broker %s in %.0f s" % (self.url.safe, self.CONNECT_TIMEOUT_S))
        if self._connack is not None and self._connack.is_failure:
            self._abort()
            raise BridgeError("broker %s refused the connection: %s" % (self.url.safe, self._connack))
        if not self._subscribed.wait(self.CONNECT_TIMEOUT_S):
            self._abort()
            raise BridgeError("broker %s did not confirm the subscription in %.0f s"
                              % (self.url.safe, self.CONNECT_TIMEOUT_S))
        if self._suback_failure:
            self._abort()
            raise BridgeError("broker %s refused the subscription to %s: %s"
                              % (self.url.safe, ",".join(self.topics), self._suback_failure))
        log.info("bridge %s -> %s, topics %s, client id %s", self.url.safe, self.sink.describe(),
                 ",".join(self.topics), self.client_id)
        return self

    def stop(self, timeout=30.0):
        """Stops taking messages, stores and acknowledges those already taken, disconnects."""
        self._accepting = False
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self._client is not None:
            try:
                self._client.disconnect()
            except Exception:
                pass
            self._client.loop_stop()
        self.sink.close()
        if self.spool is not None:
            self.spool.close()

    def _abort(self):
        self._accepting = False
        self._stopping.set()
        if self._client is not None:
            try:
                self._client.loop_stop()
                self._client.disconnect()
            except Exception:
                pass
        if self._worker is not None:
            self._worker.join(5)
        self.sink.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def connected(self):
        return self._client is not None and self._client.is_connected()

    def counters(self):
        with self._lock:
            out = dict(self._c)
            out["rejected_by_reason"] = dict(self._reasons)
        out["spool_depth"] = self.spool.depth if self.spool is not None else 0
        out["queued"] = self._q.qsize()
        return out

    def stats_line(self):
        c = self.counters()
        reasons = ", ".join("%s: %d" % kv for kv in sorted(c["rejected_by_reason"].items()))
        return ("received=%d written=%d rejected=%d%s db_rejected=%d spooled=%d spool_depth=%d"
                % (c["received"], c["written"], c["rejected"], " (%s)" % reasons if reasons else "",
                   c["db_rejected"], c["spooled"], c["spool_depth"]))

    def print_stats(self):
        out = self.stats_out
        if out is None:
            log.info("%s", self.stats_line())
        else:
            print(self.stats_line(), file=out, flush=True)

    # -- paho callbacks (network thread) --------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, props):
        self._connack = reason
        if not reason.is_failure:
            client.subscribe([(t, self.qos) for t in self.topics])
            log.info("connected to %s (session present: %s)", self.url.safe,
                     getattr(flags, "session_present", "?"))
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, props):
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        self._suback_failure = ", ".join(bad)
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason, props):
        if self._accepting:
            log.warning("broker %s disconnected (%s); reconnecting", self.url.safe, reason)

    def _on_message(self, client, userdata, msg):
        if not self._accepting:
            return  # not acknowledged: the broker sends it again next session
        self._q.put((msg.mid, msg.qos, msg.payload, msg.topic))

    # -- worker ---------------------------------------------------------------------------
    def _run(self):
        try:
            while True:
                try:
                    first = self._q.get(timeout=0.1)
                except queue.Empty:
                    first = None
                if first is not None:
                    batch = [first]
                    deadline = time.monotonic() + MAX_BATCH_AGE_S
                    while len(batch) < self.max_batch and time.monotonic() < deadline:
                        try:
                            batch.append(self._q.get_nowait())
                        except queue.Empty:
                            break
                    self._process(batch)
                self._drain()
                self._maybe_stats()
                if self._stopping.is_set() and self._q.empty():
                    break
            self._drain(final=True)
        except Exception as e:  # a bug: report it, do not die silently
            self.error = e
            log.exception("bridge worker failed")

    def _count_reject(self, reason, topic, payload):
        with self._lock:
            self._c["rejected"] += 1
            self._reasons[reason] = self._reasons.get(reason, 0) + 1
        now = time.monotonic()
        start, n = self._log_budget
        if now - start >= 1.0:
            start, n = now, 0
        if n < self.reject_log_per_s:
            preview = payload[:80]
            log.warning("rejected message on %r: %s: %r%s", topic, reason, preview,
                        "... (%d bytes)" % len(payload) if len(payload) > 80 else "")
        self._log_budget = (start, n + 1)

    def _ack(self, items):
        c = self._client
        for mid, qos, _, _ in items:
            if qos > 0:
                c.ack(mid, qos)
        with self._lock:
            self._c["acked"] += len(items)

    def _process(self, batch):
        points, good = [], []
        with self._lock:
            self._c["received"] += len(batch)
        for item in batch:
            try:
                points.append(parse(item[2]))
                good.append(item)
            except Rejected as r:
                self._count_reject(r.reason, item[3], item[2])
                self._ack([item])
        if points:
            self._store(points, good)

    def _store(self, points, items):
        while True:
            if not self._sink_down and (self.spool is None or self.spool.depth == 0):
                try:
                    self.sink.write(points)
                    with self._lock:
                        self._c["written"] += len(points)
                    self._ack(items)
                    return
                except SinkRejected as e:
                    with self._lock:
                        self._c["db_rejected"] += len(points)
                    log.error("%s", e)
                    self._ack(items)
                    return
                except SinkDown as e:
                    self._went_down(e)
            if self.spool is not None:
                try:
                    self.spool.append([to_record(p) for p in points])
                    with self._lock:
                        self._c["spooled"] += len(points)
                    self._ack(items)
                    return
                except SpoolFull as e:
                    log.error("%s; not acknowledging until the database is back", e)
                except OSError as e:
                    log.error("cannot write spool %s: %s; not acknowledging", self.spool.dir, e)
            # nowhere to put them: keep them unacknowledged, retry
            if self._stopping.is_set():
                log.warning("stopping with %d messages unstored; the broker keeps them", len(items))
                return
            time.sleep(min(self._backoff, 1.0))
            self._drain()
            if self._sink_down and time.monotonic() >= self._retry_at:
                self._sink_down = False  # try the database again

    def _went_down(self, e):
        if not self._sink_down:
            log.error("%s; %s", e, "spooling to %s" % self.spool.dir if self.spool else "holding messages")
        self._sink_down = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_retry_s)

    def _came_back(self):
        if self._sink_down:
            log.warning("%s answers again", self.sink.describe())
        self._sink_down = False
        self._backoff = self.retry_s

    def _drain(self, final=False):
        """Writes spooled points back, oldest first, for up to 0.5 s per call."""
        sp = self.spool
        if sp is None:
            if self._sink_down and time.monotonic() >= self._retry_at:
                self._sink_down = False
            return
        if sp.depth == 0:
            if self._sink_down and time.monotonic() >= self._retry_at:
                self._sink_down = False
            return
        if self._sink_down and time.monotonic() < self._retry_at:
            return
        t_end = time.monotonic() + 0.5
        while sp.depth and (final or time.monotonic() < t_end or not self._q.qsize()):
            records = sp.peek(self.max_batch)
            if not records:
                break
            points = [from_record(r) for r in records]
            try:
                self.sink.write(points)
                with self._lock:
                    self._c["written"] += len(points)
            except SinkRejected as e:
                with self._lock:
                    self._c["db_rejected"] += len(points)
                log.error("%s (spooled points dropped)", e)
            except SinkDown as e:
                self._went_down(e)
                return
            sp.consume(len(records))
            self._came_back()
            if final and time.monotonic() > t_end + 5:
                break

    def _maybe_stats(self):
        if self.stats_interval and time.monotonic() - self._last_stats >= self.stats_interval:
            self._last_stats = time.monotonic()
            self.print_stats()
