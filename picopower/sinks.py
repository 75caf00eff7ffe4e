"""Where the bridge writes points: InfluxDB 1.x over HTTP, or a SQLite file.

A sink's `write(points)` returns when every point is stored, or raises
`SinkDown` (try again later: the database is unreachable, times out or
answers 5xx/404) or `SinkRejected` (the database refused the points for good,
e.g. HTTP 400 field type conflict: retrying cannot help).

Both sinks store a re-delivered reading once: InfluxDB merges a point with the
same measurement, tag set and time (new values win); the SQLite table has the
primary key (measurement, host, time) and an upsert with the same rule. A
revision (the board's exact value for a past reading, same timestamp) thus
overwrites the live value in both. A SQLite file whose table lacks that key
gets it on opening, keeping the last row written of each reading.
"""

import base64
import http.client
import json
import os
import re
import sqlite3
import urllib.parse

from picopower.errors import Invalid
from picopower.lineproto import NUMBER_FIELDS, line, precision_of


class SinkDown(OSError):
    pass


class SinkRejected(ValueError):
    """Refused for good: `rejected` points are dropped; the other `written` ones are stored
    (InfluxDB's partial write)."""

    def __init__(self, message, written=0, rejected=0):
        super().__init__(message)
        self.written = written
        self.rejected = rejected


class InfluxSink:
    """POST /write?db=DB&precision=s|ms on one kept-alive HTTP connection."""

    TIMEOUT_S = 10.0

    def __init__(self, url, db, timeout=None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid("InfluxDB URL must look like http://HOST:PORT, got %r" % url)
        if not db:
            raise Invalid("--db needs a database name")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or 8086
        self.db = db
        self.timeout = timeout or self.TIMEOUT_S
        self.safe = "%s://%s:%d" % (self.scheme, self.host, self.port)
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if parts.username:
            cred = "%s:%s" % (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
            self.headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        self._conn = None

    def describe(self):
        return "InfluxDB %s db %s" % (self.safe, self.db)

    def _connection(self):
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers or self.headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (http.client.HTTPException, OSError) as e:
                self.close()
                # a kept-alive connection the server closed meanwhile: retry once on a new one
                if attempt == 0 and isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                                   ConnectionResetError)):
                    continue
                raise SinkDown("%s unreachable: %s" % (self.safe, e or type(e).__name__)) from None

    def check(self):
        """At start-up: the server answers and the database exists (created if missing, as Telegraf does)."""
        status, data = self._request("GET", "/ping")
        if status != 204:
            raise SinkDown("%s is not InfluxDB 1.x (GET /ping answered %d)" % (self.safe, status))
        body = urllib.parse.urlencode({"q": 'CREATE DATABASE "%s"' % self.db.replace('"', '\\"')})
        headers = dict(self.headers, **{"Content-Type": "application/x-www-form-urlencoded"})
        status, data = self._request("POST", "/query", body=body, headers=headers)
        try:
            err = [r["error"] for r in json.loads(data).get("results", []) if "error" in r]
        except ValueError:
            err = [data[:200].decode(errors="replace")]
        if status != 200 or err:
            raise SinkDown("cannot create database %r on %s: HTTP %d %s" % (self.db, self.safe, status,
                                                                            "; ".join(err)))

    def write(self, points):
        groups = {}
        for p in points:
            groups.setdefault(precision_of(p), []).append(p)
        written, refused, why = 0, 0, []
        for precision, pts in groups.items():
            body = ("\n".join(line(p, precision) for p in pts) + "\n").encode("utf-8")
            path = "/write?" + urllib.parse.urlencode({"db": self.db, "precision": precision})
            status, data = self._request("POST", path, body=body)
            if status == 204:
                written += len(pts)
                continue
            text = data[:300].decode("utf-8", "replace").strip()
            if status != 400:
                raise SinkDown("%s answered HTTP %d: %s" % (self.safe, status, text))
            # a partial write stores the rest and says how many it dropped, at the end of its text
            dropped = re.search(rb"dropped=(\d+)", data)
            n = min(int(dropped.group(1)), len(pts)) if dropped else len(pts)
            written += len(pts) - n
            refused += n
            why.append(text)
        if refused:
            raise SinkRejected("InfluxDB stored %d of %d points and dropped %d: %s"
                               % (written, len(points), refused, " | ".join(why)), written, refused)

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


KEY = ("measurement", "host", "time")


def _has_unique_key(db, table):
    for row in db.execute('PRAGMA index_list("%s")' % table):
        name, unique = row[1], row[2]
        if unique and tuple(r[2] for r in db.execute('PRAGMA index_info("%s")' % name)) == KEY:
            return True
    return False


def _add_unique_key(db, table):
    """A table made before readings were upserted (or by hand) may hold several
    rows of one reading: keep the last written (a revision is written after
    its live reading) and add the unique key an upsert needs."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute('DELETE FROM "{0}" WHERE rowid NOT IN (SELECT max(rowid) FROM "{0}" '
                   'GROUP BY measurement, host, time)'.format(table))
        db.execute('CREATE UNIQUE INDEX IF NOT EXISTS "{0}_reading" ON "{0}" (measurement, host, time)'
                   .format(table))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class SqliteSink:
    """A table `points` (measurement, host, time, power, energy, pulses), primary key
    (measurement, host, time), upserted; `time` is unix seconds (REAL, ms resolution)."""

    def __init__(self, path, table="points"):
        self.path = path
        self.table = table
        self._db = None

    def describe(self):
        return "SQLite %s" % self.path

    def check(self):
        d = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(d):
            raise SinkDown("cannot open %s: no such directory %s" % (self.path, d))
        try:
            self._open()
        except sqlite3.Error as e:
            self.close()
            raise SinkDown("cannot open %s: %s" % (self.path, e)) from None

    def _open(self):
        if self._db is not None:
            return self._db
        db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            cols = ", ".join('"%s" REAL%s' % (k, " NOT NULL" if k == "power" else "") for k in NUMBER_FIELDS)
            db.execute('CREATE TABLE IF NOT EXISTS "%s" (measurement TEXT NOT NULL, host TEXT NOT NULL, '
                       'time REAL NOT NULL, %s, PRIMARY KEY (measurement, host, time))' % (self.table, cols))
            have = {r[1] for r in db.execute('PRAGMA table_info("%s")' % self.table)}
            for k in NUMBER_FIELDS:
                if k not in have:
                    db.execute('ALTER TABLE "%s" ADD COLUMN "%s" REAL' % (self.table, k))
            if not _has_unique_key(db, self.table):
                _add_unique_key(db, self.table)
        except BaseException:
            db.close()
            raise
        names = ", ".join('"%s"' % k for k in NUMBER_FIELDS)
        marks = ", ".join("?" for _ in NUMBER_FIELDS)
        sets = ", ".join('"{0}" = coalesce(excluded."{0}", "{1}"."{0}")'.format(k, self.table)
                         for k in NUMBER_FIELDS)
        self._sql = ('INSERT INTO "%s" (measurement, host, time, %s) VALUES (?, ?, ?, %s) '
                     'ON CONFLICT (measurement, host, time) DO UPDATE SET %s'
                     % (self.table, names, marks, sets))
        self._db = db
        return db

    def write(self, points):
        rows = [(p.measurement, p.host, float(p.time)) + tuple(p.fields.get(k) for k in NUMBER_FIELDS)
                for p in points]
        try:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(self._sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            self.close()
            raise SinkDown("cannot write %s: %s" % (self.path, e)) from None

    def close(self):
        if self._db is not None:
            try:
                self._db.close()
            finally:
                self._db = None
