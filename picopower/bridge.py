"""The bridge: MQTT readings into InfluxDB 1.x or SQLite, what Telegraf does in the seed.

    b = Bridge("mqtt://127.0.0.1:1883", ["power"], InfluxSink("http://127.0.0.1:8086", "telegraf"),
               spool_dir="/var/lib/picopower/spool")
    b.start()            # raises BridgeError (one line) if the broker or database is unreachable
    ...
    b.counters()         # {"received": .., "written": .., "rejected": .., "rejected_by_reason": {..}, ..}
    b.stop()

Delivery is at least once, along the data flow:

- `intake.Intake`: a persistent MQTT session with manual acknowledgements;
  paho's network thread only queues messages.
- here, one worker thread: batches of up to `max_batch` messages (or what
  came within MAX_BATCH_AGE_S), parsed and validated by `lineproto.parse`;
  a rejected message is counted, logged (rate-limited) and acknowledged, as it
  can never be written.
- `store.Store`: the batch into the database, or the spool while it is down;
  only then are the messages acknowledged. When neither takes them the broker
  keeps them: with at most its in-flight window unacknowledged, it stops
  sending more.

With `share=GROUP` several bridges split one topic between them (MQTT shared
subscriptions): see intake.py for what the broker does with a dead member.
"""

import logging
import queue
import socket
import threading
import time

from picopower.errors import Invalid
from picopower.intake import BridgeError, Intake  # noqa: F401  (BridgeError: part of this API)
from picopower.lineproto import Rejected, parse
from picopower.sinks import SinkDown
from picopower.spool import Spool
from picopower.store import Store
from picopower.urls import parse_broker

log = logging.getLogger("picopower.bridge")

MAX_BATCH = 500
MAX_BATCH_AGE_S = 1.0


def default_client_id():
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-_")[:40]
    return "picopower-bridge-" + (host or "host")


class Bridge:
    def __init__(self, broker, topics, sink, spool_dir=None, spool_max_bytes=100 * 1024 * 1024,
                 client_id=None, ca_file="", qos=1, max_batch=MAX_BATCH, retry_s=1.0,
                 max_retry_s=10.0, stats_interval=0, stats_out=None, reject_log_per_s=10, share=None):
        url = parse_broker(broker, ca_file) if isinstance(broker, str) else broker
        topics = [topics] if isinstance(topics, str) else list(topics)
        if not topics:
            raise Invalid("at least one --topic is needed")
        self.sink = sink
        self.spool = Spool(spool_dir, spool_max_bytes) if spool_dir else None
        self.client_id = client_id or default_client_id()
        self.intake = Intake(url, topics, self.client_id, qos, share, log)
        self.store = Store(sink, self.spool, max_batch, retry_s, max_retry_s, log)
        self.max_batch = max_batch
        self.stats_interval = stats_interval
        self.stats_out = stats_out
        self.reject_log_per_s = reject_log_per_s
        self._lock = threading.Lock()
        self._c = {"received": 0, "rejected": 0, "acked": 0}
        self._reasons = {}
        self._stopping = threading.Event()
        self._worker = None
        self._last_stats = time.monotonic()
        self._log_budget = (time.monotonic(), 0)
        self.error = None  # a fatal error in the worker, if any

    @property
    def url(self):
        return self.intake.url

    # -- public ---------------------------------------------------------------------------
    def start(self):
        try:
            self.sink.check()
        except (SinkDown, OSError) as e:
            raise BridgeError(str(e)) from None
        self._worker = threading.Thread(target=self._run, name="bridge-worker", daemon=True)
        self._worker.start()
        try:
            self.intake.start()
        except BridgeError:
            self._abort()
            raise
        log.info("bridge %s -> %s, topics %s, client id %s", self.url.safe, self.sink.describe(),
                 ",".join(self.intake.filters), self.client_id)
        return self

    def stop(self, timeout=30.0):
        """Stops taking messages, stores and acknowledges those already taken, disconnects."""
        self.intake.stop_taking()
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self.intake.close()
        self.sink.close()
        if self.spool is not None:
            self.spool.close()

    def _abort(self):
        self.intake.stop_taking()
        self._stopping.set()
        self.intake.close()
        if self._worker is not None:
            self._worker.join(5)
        self.sink.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def connected(self):
        return self.intake.connected

    def counters(self):
        with self._lock:
            out = dict(self._c)
            out["rejected_by_reason"] = dict(self._reasons)
        out.update(self.store.counts())
        out["queued"] = self.intake.queue.qsize()
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

    # -- worker ---------------------------------------------------------------------------
    def _run(self):
        q = self.intake.queue
        try:
            while True:
                batch = self._next_batch(q)
                if batch:
                    self._process(batch)
                self.store.drain(busy=lambda: q.qsize() > 0)
                self._maybe_stats()
                if self._stopping.is_set() and q.empty():
                    break
            self.store.drain(final=True)
        except Exception as e:  # noqa: BLE001  (a bug: report it, do not die silently)
            self.error = e
            log.exception("bridge worker failed")

    def _next_batch(self, q):
        try:
            batch = [q.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + MAX_BATCH_AGE_S
        while len(batch) < self.max_batch and time.monotonic() < deadline:
            try:
                batch.append(q.get_nowait())
            except queue.Empty:
                break
        return batch

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
        if points and self.store.put(points, self._stopping):
            self._ack(good)

    def _ack(self, items):
        self.intake.ack(items)
        with self._lock:
            self._c["acked"] += len(items)

    def _count_reject(self, reason, topic, payload):
        with self._lock:
            self._c["rejected"] += 1
            self._reasons[reason] = self._reasons.get(reason, 0) + 1
        now = time.monotonic()
        start, n = self._log_budget
        if now - start >= 1.0:
            start, n = now, 0
        if n < self.reject_log_per_s:
            log.warning("rejected message on %r: %s: %r%s", topic, reason, payload[:80],
                        "... (%d bytes)" % len(payload) if len(payload) > 80 else "")
        self._log_budget = (start, n + 1)

    def _maybe_stats(self):
        if self.stats_interval and time.monotonic() - self._last_stats >= self.stats_interval:
            self._last_stats = time.monotonic()
            self.print_stats()
