"""The bridge's store: points into the database, or into the spool while it is down.

`Store.put(points, stopping)` returns True once the points are stored:
written to the database, refused by it for good (counted in `db_rejected`),
or appended (fsync'ed) to the spool while the database is down. The caller
acknowledges the messages only then. When neither takes them (the database
is down and the spool is full, its disk is full, or there is no spool) `put`
keeps retrying and draining, and returns False only if `stopping` is set
first: the messages stay unacknowledged, so the broker keeps them.

`drain()` writes spooled points back, oldest first; while the spool is not
empty new points queue behind it, so the order is kept. Each trouble (database
down, spool refusing) is logged once when it starts and once when it ends.

Counters: `written` (points the database accepted, a partial write counted
point by point), `db_rejected` (points it refused for good), `spooled`.
Not thread-safe except `counts()`: one worker thread uses it.
"""

import logging
import threading
import time

from picopower.lineproto import from_record, to_record
from picopower.sinks import SinkDown, SinkRejected
from picopower.spool import SpoolFull


class Store:
    DRAIN_SLICE_S = 0.5   # a drain call gives new messages a turn after this long

    def __init__(self, sink, spool=None, max_batch=500, retry_s=1.0, max_retry_s=10.0, log=None):
        self.sink = sink
        self.spool = spool
        self.max_batch = max_batch
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.log = log or logging.getLogger("picopower.bridge")
        self._lock = threading.Lock()
        self._c = {"written": 0, "spooled": 0, "db_rejected": 0}
        self._sink_down = False    # do not try the database before _retry_at
        self._down_told = False    # its going down is logged, its coming back not yet
        self._retry_at = 0.0
        self._backoff = retry_s
        self._spool_trouble = ""   # why the spool refused the last append, until one succeeds

    def counts(self):
        with self._lock:
            out = dict(self._c)
        out["spool_depth"] = self.spool.depth if self.spool is not None else 0
        return out

    def _add(self, **kw):
        with self._lock:
            for k, v in kw.items():
                self._c[k] += v

    # -- storing new points ---------------------------------------------------------------
    def put(self, points, stopping):
        while True:
            if self._write_now(points) or self._spool(points):
                if self._spool_trouble:
                    self.log.warning("readings flow again (spool %s)", self.spool.dir)
                    self._spool_trouble = ""
                return True
            if stopping.is_set():
                self.log.warning("stopping with %d readings unstored; the broker keeps them", len(points))
                return False
            stopping.wait(min(self._backoff, 1.0))
            self.drain()

    def _write_now(self, points):
        if self._sink_down or (self.spool is not None and self.spool.depth):
            return False
        try:
            self._write(points)
        except SinkDown as e:
            self._went_down(e)
            return False
        return True

    def _write(self, points, note=""):
        """Writes to the sink, counting a refusal (partial or whole) as final; SinkDown passes."""
        try:
            self.sink.write(points)
            self._add(written=len(points))
        except SinkRejected as e:
            self._add(written=e.written, db_rejected=e.rejected)
            self.log.error("%s%s", e, note)
        self._came_back()

    def _spool(self, points):
        if self.spool is None:
            return False
        try:
            self.spool.append([to_record(p) for p in points])
        except OSError as e:   # SpoolFull, ENOSPC, EIO, ...
            if not self._spool_trouble:
                why = str(e) if isinstance(e, SpoolFull) else "cannot write spool %s: %s" % (self.spool.dir, e)
                self.log.error("%s; holding the readings unacknowledged at the broker until there is room",
                               why)
            self._spool_trouble = str(e)
            return False
        self._add(spooled=len(points))
        return True

    # -- the database going and coming ----------------------------------------------------
    def _went_down(self, e):
        if not self._down_told:
            self._down_told = True
            self.log.error("%s; %s", e, "spooling to %s" % self.spool.dir if self.spool else "holding messages")
        self._sink_down = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.max_retry_s)

    def _came_back(self):
        if self._down_told:
            self._down_told = False
            self.log.warning("%s answers again", self.sink.describe())
        self._sink_down = False
        self._backoff = self.retry_s

    def _due(self):
        """True unless the database is down and its next try is not due yet."""
        if self._sink_down and time.monotonic() >= self._retry_at:
            self._sink_down = False   # try the database again
        return not self._sink_down

    # -- the spool back into the database -------------------------------------------------
    def drain(self, final=False, busy=lambda: True):
        """Writes spooled points back, oldest first, for up to DRAIN_SLICE_S per call (longer
        while `busy()` says no new message waits; until empty or 5 s more when `final`)."""
        sp = self.spool
        if not self._due() or sp is None or not sp.depth:
            return
        t_end = time.monotonic() + self.DRAIN_SLICE_S
        while sp.depth and (final or time.monotonic() < t_end or not busy()):
            try:
                records = sp.peek(self.max_batch)
            except OSError as e:
                self.log.error("cannot read spool %s: %s; retrying", sp.dir, e)
                return
            if not records:
                break
            try:
                self._write([from_record(r) for r in records], " (spooled points dropped)")
            except SinkDown as e:
                self._went_down(e)
                return
            sp.consume(len(records))
            if final and time.monotonic() > t_end + 5:
                break
