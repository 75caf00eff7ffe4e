"""picopower simulate --broker URL --topic T [--watts W | --profile FILE] [--meters N] [--speed X] ..."""

import argparse
import ast
import math
import sys
import time

from picopower.cli import CliError
from picopower.firmware import config
from picopower.simulate import Simulation, load_profile, progress_line, summary_lines

EXAMPLE = """examples:
  picopower simulate --broker mqtt://127.0.0.1:1883 --topic power/house --watts 1200 --duration 60
  picopower simulate --broker mqtt://127.0.0.1:1883 --topic power/house --speed 1000 --duration 86400
  picopower simulate --broker mqtt://127.0.0.1:1883 --topic fleet --meters 1000 --duration 600
  picopower simulate --broker mqtts://user:pass@broker.lan:8883 --ca-file ca.crt --topic t --profile load.txt
  picopower simulate --broker mqtt://127.0.0.1:1883 --topic power/house --set HA_DISCOVERY=True \
                     --set "CHANNELS=[{'PIN': 22, 'SERIESNAME': 'house'}, {'PIN': 21, 'SERIESNAME': 'garage'}]"

A profile file has 'seconds watts' per line (comma or space separated); each value
holds until the next line. Without --watts or --profile each board runs a household
day (fridge, kettle, oven, lights); every channel meters the same load. Timestamps
are virtual unix times from now (or --start); --speed 0 runs as fast as possible.
--set takes any setting of lib/secrets.py, its value as a Python literal (a bare
word is text), checked by the firmware's own validator. Board ids are new on each
run (Home Assistant sees new devices) unless --data-dir keeps them. Progress goes
to standard error about once a second, a summary to standard output at the end or
on Ctrl-C."""

# Settings the command's own flags own: --set would contradict them.
FLAG_OF = {"MQTT_TOPIC": "--topic", "HOSTNAME": "--host", "SERIESNAME": "--series",
           "IMP_PER_KWH": "--imp-per-kwh", "REPORT_INTERVAL_S": "--interval", "MQTT_SERVER": "--broker",
           "MQTT_PORT": "--broker", "MQTT_USER": "--broker", "MQTT_PASS": "--broker",
           "MQTT_TLS": "--broker mqtts://", "MQTT_CA_FILE": "--ca-file"}


def register(sub):
    p = sub.add_parser("simulate", help="run virtual Pico Ws (the firmware's own loop) against a real broker",
                       description="Runs the firmware's application loop, the very code that runs on the "
                                   "board, with only the board layer replaced: a simulated meter LED driven "
                                   "by a load profile, a virtual clock and paho-mqtt, against a real broker.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://[user:pass@]host[:port] or mqtts://")
    p.add_argument("--topic", required=True, metavar="T", help="MQTT_TOPIC the boards publish to")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--watts", type=float, metavar="W", help="a constant load in watts")
    load.add_argument("--profile", metavar="FILE", help="a load profile: 'seconds watts' per line")
    p.add_argument("--imp-per-kwh", type=int, default=1000, metavar="N", help="meter constant (1000)")
    p.add_argument("--interval", type=int, default=10, metavar="S", help="report interval in seconds (10)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="virtual seconds to run (default: until Ctrl-C)")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="virtual clock X times faster than the wall clock; 0 = as fast as possible (1)")
    p.add_argument("--meters", type=int, default=1, metavar="N",
                   help="number of virtual boards, hosts NAME-1..NAME-N (1)")
    p.add_argument("--host", default="picopower", metavar="NAME", help="HOSTNAME, or its prefix with --meters")
    p.add_argument("--series", default="power", metavar="NAME", help="SERIESNAME (the InfluxDB measurement)")
    p.add_argument("--ca-file", default="", metavar="F", help="CA certificate to verify an mqtts:// broker")
    p.add_argument("--data-dir", metavar="D",
                   help="where the boards keep their energy totals (default: a temporary directory)")
    p.add_argument("--start", type=float, metavar="UNIX", help="virtual unix time of the start (default: now)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                   help="any firmware setting, e.g. --set HA_DISCOVERY=True (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the boards' own log lines")
    p.set_defaults(func=run)


def _check(args):
    if not 1 <= args.interval <= 3600:
        raise CliError("--interval must be 1-3600 seconds, got %d" % args.interval)
    if not 1 <= args.imp_per_kwh <= 100000:
        raise CliError("--imp-per-kwh must be 1-100000, got %d" % args.imp_per_kwh)
    if not 1 <= args.meters <= 100000:
        raise CliError("--meters must be 1-100000, got %d" % args.meters)
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        raise CliError("--duration must be a positive number of seconds, got %s" % args.duration)
    if not args.speed >= 0:
        raise CliError("--speed must be 0 (as fast as possible) or a positive number, got %s" % args.speed)
    if args.start is not None and not (args.start > 1577836800 and math.isfinite(args.start)):
        raise CliError("--start must be a unix time after 2020, got %s" % args.start)


def parse_settings(items):
    """{NAME: value} from --set NAME=VALUE items, checked by the firmware's config.check."""
    values = {}
    for item in items:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise CliError("--set %r: expected NAME=VALUE, e.g. --set HA_DISCOVERY=True" % item)
        if name not in config.SETTINGS:
            raise CliError("--set %s: not a firmware setting (lib/secrets.example.py lists them)" % name)
        if name in FLAG_OF:
            raise CliError("--set %s: set it with %s" % (name, FLAG_OF[name]))
        if name == "MQTT_CLIENT_ID":
            raise CliError("--set MQTT_CLIENT_ID: each board's client id is made of its own board id")
        try:
            values[name] = ast.literal_eval(text.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            values[name] = text  # a bare word: text, as a shell user means it
    _, errors, _ = config.check(values, required=False)
    if errors:
        raise CliError("--set: " + "; ".join(errors))
    return values


def run(args):
    _check(args)
    extra = parse_settings(args.settings)
    profile = load_profile(args.watts, args.profile)
    err = sys.stderr
    log = None
    if args.verbose:
        def log(board_id, line):
            print("board %s: %s" % (board_id, line), file=err)
    try:
        sim = Simulation(args.broker, args.topic, profile=profile, meters=args.meters, host=args.host,
                         series=args.series, imp_per_kwh=args.imp_per_kwh, interval_s=args.interval,
                         speed=args.speed, start_unix_s=args.start, data_dir=args.data_dir,
                         ca_file=args.ca_file, extra=extra, log=log)
    except ValueError as e:  # the firmware's validator on the combined settings, a bad URL or CA file
        raise CliError(str(e)) from None
    warned = [False]

    def progress(s):
        if s.first_error and not s.ever_connected and not warned[0]:
            warned[0] = True
            print("picopower simulate: warning: %s; the boards keep retrying (backoff 1 s doubling to 60 s) "
                  "and queue their readings" % s.first_error, file=err)
        print(progress_line(s), file=err, flush=True)

    print("simulating %d board%s against %s, topic '%s', every %d s, speed %s" % (
        args.meters, "" if args.meters == 1 else "s", sim.url.safe, args.topic, args.interval,
        "max" if sim.speed == 0 else "%gx" % sim.speed), file=err)
    status = 0
    wall0 = time.monotonic()
    try:
        try:
            sim.run(args.duration, progress=progress)
            if sim.ever_connected:
                sim.drain(wall_s=10.0, progress=progress)
        except KeyboardInterrupt:
            status = 130
        progress(sim)
        for line in summary_lines(sim):
            print(line)
        print("wall time %.1f s (%.0fx real time)" % (
            time.monotonic() - wall0, sim.now_s / max(1e-9, time.monotonic() - wall0)))
        if sim.ever_connected and sim.queued():
            print("picopower simulate: warning: %d readings still queued on the boards (not published)%s" % (
                sim.queued(), ": " + sim.last_error if sim.last_error else ""), file=err)
        if not sim.ever_connected:
            raise CliError("never connected to %s in %s virtual seconds: %s" % (
                sim.url.safe, "%g" % sim.now_s, sim.first_error or "no answer"))
    finally:
        sim.close()
    return status
