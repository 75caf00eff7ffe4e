"""picopower replay PULSES --imp-per-kwh N [--interval S] [--max-power W]"""

import argparse
import sys

from picopower.errors import Unavailable
from picopower.replay import read_pulse_times, replay

EXAMPLE = """example:
  picopower replay pulses.txt --imp-per-kwh 1000 --interval 10 > readings.jsonl
  picopower replay pulses.txt --imp-per-kwh 1000 --revisions > stored.jsonl   # plus revisions

PULSES has one unix time in seconds (float) per line; '-' reads standard input.
The first pulse's time counts as an NTP-synced clock."""


def register(sub):
    p = sub.add_parser("replay", help="run the firmware over a file of pulse times, print its messages",
                       description="Runs the firmware's own code over a file of pulse times on a virtual "
                                   "clock and prints, one JSON object per line, exactly the messages the "
                                   "board would publish.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pulses", metavar="PULSES", help="file of pulse times, or - for standard input")
    p.add_argument("--imp-per-kwh", type=int, required=True, metavar="N", help="meter constant (imp/kWh)")
    p.add_argument("--interval", type=int, default=10, metavar="S", help="report interval in seconds (10)")
    p.add_argument("--max-power", type=int, default=24000, metavar="W",
                   help="highest real power; faster pulses are ghosts (24000)")
    p.add_argument("--host", default="picopower", help="HOSTNAME in the messages")
    p.add_argument("--series", default="power", help="SERIESNAME in the messages")
    p.add_argument("--revisions", action="store_true",
                   help="print the board's revisions too, where it publishes them: for each timestamp the "
                        "first line is the live reading, the last the value that is stored")
    p.set_defaults(func=run)


def run(args):
    if args.pulses == "-":
        times = read_pulse_times(sys.stdin, "stdin")
    else:
        try:
            f = open(args.pulses)
        except OSError as e:
            raise Unavailable("cannot read %s: %s" % (args.pulses, e.strerror or e)) from None
        with f:
            times = read_pulse_times(f, args.pulses)
    extra = {"HOSTNAME": args.host, "SERIESNAME": args.series}
    out = sys.stdout
    for line in replay(times, args.imp_per_kwh, args.interval, args.max_power, extra, revisions=args.revisions):
        out.write(line + "\n")
    out.flush()
