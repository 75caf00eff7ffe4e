"""Private Mosquitto 2.0 and InfluxDB 1.6 servers for the tests and bench/ scripts.

Test infrastructure, not shipped in the picopower package (the demo needs no
server: it embeds amqtt).

Each server runs as a child process of ours, listens only on a free port of
127.0.0.1, keeps every file (config, persistence, data, logs) in its own
temporary directory, and is stopped and removed by `close()` (or by leaving a
`with` block). Never a system service, never another address.

    with Mosquitto() as broker, InfluxDB() as influx:
        broker.url            # "mqtt://127.0.0.1:41234"
        influx.url            # "http://127.0.0.1:38211"
        influx.create_database("telegraf")
        influx.query('SELECT * FROM "power"', db="telegraf")
        influx.stop(); influx.restart()   # same port and data: points survive

`stop()` ends the process (SIGTERM, so Mosquitto saves its persistence file);
`kill()` ends it with SIGKILL; `restart()` starts it again on the same port
with the same directories. Start-up waits until the server answers: Mosquitto
accepts a TCP connection, influxd answers GET /ping with 204.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

MOSQUITTO = os.environ.get("PICOPOWER_MOSQUITTO", "/usr/sbin/mosquitto")
INFLUXD = os.environ.get("PICOPOWER_INFLUXD", "/usr/bin/influxd")
HOST = "127.0.0.1"


class ServerError(OSError):
    """A server would not start (the message carries the end of its log)."""


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _tcp_open(port, timeout=0.2):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return " | ".join(lines[-n:])
    except OSError:
        return "(no log)"


class _Server:
    """A child process with a temp dir, a log file and start/stop/restart."""

    name = "server"
    START_TIMEOUT_S = 30.0

    def __init__(self, workdir=None):
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="picopower-%s-" % self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, self.name + ".log")
        self.proc = None
        self.startup_s = None  # how long the last start took

    # subclasses: _command(), _ready(), _write_config()
    def start(self):
        if self.running:
            return self
        self._write_config()
        t0 = time.monotonic()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir, start_new_session=True)
        except OSError as e:
            raise ServerError("cannot run %s: %s" % (self._command()[0], e)) from None
        finally:
            log.close()
        deadline = t0 + self.START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise ServerError("%s exited with status %s at start-up: %s"
                                  % (self.name, rc, _tail(self.log_path)))
            if self._ready():
                break
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError("%s not ready after %.0f s: %s"
                                  % (self.name, self.START_TIMEOUT_S, _tail(self.log_path)))
            time.sleep(0.02)
        self.startup_s = time.monotonic() - t0
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self, timeout=10.0):
        """Graceful stop (SIGTERM); SIGKILL if it does not exit in `timeout` s."""
        self._end(signal.SIGTERM, timeout)

    def kill(self):
        self._end(signal.SIGKILL, 5.0)

    def pause(self):
        """SIGSTOP: the port stays open but nothing answers (a hung server)."""
        if self.running:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.running:
            self.proc.send_signal(signal.SIGCONT)

    def _end(self, sig, timeout):
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.send_signal(sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass
        self.proc = None
        self._wait_port_free()

    def _wait_port_free(self):
        pass

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def log(self):
        return _tail(self.log_path, 1000000)


class Mosquitto(_Server):
    """A private Mosquitto 2.0 broker on 127.0.0.1.

    Options: `password_file` (made with `make_password_file`) turns anonymous
    access off unless `allow_anonymous=True` is also given; `tls=(ca, cert,
    key)` adds a TLS listener on `tls_port` (see `make_test_certs`).
    Persistence (sessions, queued QoS 1 messages, retained messages) is kept
    in the temp dir and saved on stop(), so it survives restart().
    `conf_text` runs a whole mosquitto.conf of yours instead (e.g. what
    `picopower config mosquitto` prints), whose listener must be `port`.
    """

    name = "mosquitto"

    def __init__(self, port=None, password_file=None, allow_anonymous=None, tls=None, tls_port=None,
                 extra_config="", workdir=None, conf_text=None):
        super().__init__(workdir)
        self.conf_text = conf_text
        self.port = port or free_port()
        self.password_file = password_file
        self.allow_anonymous = (password_file is None) if allow_anonymous is None else allow_anonymous
        self.tls = tls
        self.tls_port = (tls_port or free_port()) if tls else None
        self.extra_config = extra_config
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir, exist_ok=True)

    @property
    def url(self):
        return "mqtt://%s:%d" % (HOST, self.port)

    @property
    def tls_url(self):
        return "mqtts://%s:%d" % (HOST, self.tls_port) if self.tls else None

    def _write_config(self):
        if self.conf_text is not None:
            # as root Mosquitto drops to the `mosquitto` user, who cannot write our temp dir
            with open(self.conf_path, "w") as f:
                f.write(self.conf_text + ("\nuser root\n" if os.geteuid() == 0 else ""))
            return
        lines = [
            "per_listener_settings false",
            "allow_anonymous %s" % ("true" if self.allow_anonymous else "false"),
            "persistence true",
            "persistence_location %s/" % self.data_dir,
            "autosave_interval 1",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            "listener %d %s" % (self.port, HOST),
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else it drops to `mosquitto`, who cannot write our temp dir
        if self.password_file:
            lines.append("password_file %s" % self.password_file)
        if self.tls:
            ca, cert, key = self.tls
            lines += ["listener %d %s" % (self.tls_port, HOST),
                      "cafile %s" % ca, "certfile %s" % cert, "keyfile %s" % key]
        if self.extra_config:
            lines.append(self.extra_config)
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _command(self):
        return [MOSQUITTO, "-c", self.conf_path]

    def _ready(self):
        if not _tcp_open(self.port):
            return False
        return not self.tls or _tcp_open(self.tls_port)

    def _wait_port_free(self):
        deadline = time.monotonic() + 5
        while _tcp_open(self.port, 0.05) and time.monotonic() < deadline:
            time.sleep(0.02)


def make_password_file(path, users):
    """Writes a Mosquitto password file for {user: password} (mosquitto_passwd -b)."""
    first = True
    for user, password in users.items():
        args = ["mosquitto_passwd", "-b"] + (["-c"] if first else []) + [path, user, password]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise ServerError("mosquitto_passwd failed: %s" % (r.stderr or r.stdout).strip())
        first = False
    if os.geteuid() == 0:
        os.chmod(path, 0o600)
    return path


def make_test_certs(directory, hostname="127.0.0.1"):
    """A throw-away CA and a server certificate for `hostname` (an IP or a name),
    made with the openssl command. Returns (ca.crt, server.crt, server.key)."""
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)  # noqa: E731
    san = ("IP:" if hostname.replace(".", "").isdigit() else "DNS:") + hostname
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=picopower test CA", "-keyout", p("ca.key"), "-out", p("ca.crt")],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + hostname,
         "-keyout", p("server.key"), "-out", p("server.csr")],
    ]
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n" % san)
    steps.append(["openssl", "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                  "-CAcreateserial", "-days", "2", "-extfile", p("ext.cnf"), "-out", p("server.crt")])
    for args in steps:
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise ServerError("openssl failed: %s" % r.stderr.strip()[-300:])
    return p("ca.crt"), p("server.crt"), p("server.key")


class InfluxDB(_Server):
    """A private InfluxDB 1.6 (`influxd -config conf`) on 127.0.0.1.

    HTTP on `port`, the RPC bind-address on another free loopback port;
    reporting, monitoring, UDP, Graphite, collectd, OpenTSDB, subscriber and
    continuous queries off. meta/, data/ and wal/ live in the temp dir, so
    points survive stop()/restart().
    """

    name = "influxdb"

    def __init__(self, port=None, workdir=None):
        super().__init__(workdir)
        self.port = port or free_port()
        self.rpc_port = free_port()
        while self.rpc_port == self.port:
            self.rpc_port = free_port()
        self.conf_path = os.path.join(self.dir, "influxdb.conf")

    @property
    def url(self):
        return "http://%s:%d" % (HOST, self.port)

    def _write_config(self):
        d = self.dir
        conf = """reporting-disabled = true
bind-address = "{host}:{rpc}"

[meta]
  dir = "{d}/meta"
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{host}:{http}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
  https-enabled = false
  flux-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[subscriber]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = false
""".format(host=HOST, rpc=self.rpc_port, http=self.port, d=d)
        with open(self.conf_path, "w") as f:
            f.write(conf)

    def _command(self):
        return [INFLUXD, "-config", self.conf_path]

    def _ready(self):
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=0.5) as r:
                return r.status == 204
        except (OSError, ValueError):
            return False

    def _wait_port_free(self):
        deadline = time.monotonic() + 5
        while (_tcp_open(self.port, 0.05) or _tcp_open(self.rpc_port, 0.05)) and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- small HTTP helpers -------------------------------------------------------------
    def query(self, q, db=None, method=None, epoch="s"):
        """Runs InfluxQL; returns the decoded JSON. Raises ServerError on an error result."""
        return influx_query(self.url, q, db=db, method=method, epoch=epoch)

    def create_database(self, name):
        self.query('CREATE DATABASE "%s"' % name.replace('"', '\\"'), method="POST")

    def write(self, lines, db, precision="s"):
        data = ("\n".join(lines) if not isinstance(lines, str) else lines).encode()
        url = "%s/write?%s" % (self.url, urllib.parse.urlencode({"db": db, "precision": precision}))
        req = urllib.request.Request(url, data=data, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status

    def points(self, q, db):
        """Rows of a SELECT as dicts (column -> value), with the series' tags merged in."""
        return rows(self.query(q, db=db))


def influx_query(url, q, db=None, method=None, epoch="s"):
    params = {"q": q}
    if db:
        params["db"] = db
    if epoch:
        params["epoch"] = epoch
    if method is None:
        head = q.lstrip().split(None, 1)[0].upper() if q.strip() else ""
        method = "GET" if head in ("SELECT", "SHOW") else "POST"
    enc = urllib.parse.urlencode(params)
    if method == "GET":
        req = urllib.request.Request(url + "/query?" + enc)
    else:
        req = urllib.request.Request(url + "/query", data=enc.encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        raise ServerError("query %r failed: HTTP %d %s" % (q, e.code, e.read().decode(errors="replace")))
    for res in body.get("results", []):
        if "error" in res:
            raise ServerError("query %r failed: %s" % (q, res["error"]))
    if "error" in body:
        raise ServerError("query %r failed: %s" % (q, body["error"]))
    return body


def rows(body):
    out = []
    for res in body.get("results", []):
        for series in res.get("series", []) or []:
            cols = series["columns"]
            tags = series.get("tags", {}) or {}
            for values in series.get("values", []) or []:
                row = dict(tags)
                row.update(zip(cols, values))
                row.setdefault("_measurement", series.get("name"))
                out.append(row)
    return out


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls predicate() until it returns a true value (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def publish(url, topic, payloads, qos=1, retain=False, timeout=10.0):
    """Publishes each payload (str or bytes) to a broker URL with paho-mqtt and waits
    for every PUBACK; returns the number published."""
    import paho.mqtt.client as mqtt
    from picopower.urls import parse_broker
    u = parse_broker(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=True)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    if u.username:
        c.username_pw_set(u.username, u.password)
    if u.tls:
        c.tls_set(ca_certs=u.ca_file or None)
    c.connect(u.host, u.port, keepalive=30)
    c.loop_start()
    try:
        infos = [c.publish(topic, p, qos=qos, retain=retain) for p in payloads]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
            if not info.is_published():
                raise ServerError("publish to %s timed out" % u.safe)
        return len(infos)
    finally:
        c.disconnect()
        c.loop_stop()
