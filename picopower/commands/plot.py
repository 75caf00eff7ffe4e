"""picopower plot (--sqlite FILE | --influx URL --db NAME) [--series S] [--since 24h] [--out graph.png]"""

import argparse
import sys

from picopower import plot
from picopower.errors import UserError

EXAMPLE = """examples:
  picopower plot --sqlite demo.sqlite --out demo.png
  picopower plot --influx http://127.0.0.1:8086 --db telegraf --series power --since 7d --out week.png

The window ends at the newest reading. Energy per day comes from the boards'
energy counter (or from power x time for boards that send no energy)."""


def register(sub):
    p = sub.add_parser("plot", help="PNG of power over time with energy per day",
                       description="Draws power over time per host (like the original project's Grafana "
                                   "graph) and the energy of each day, from the bridge's SQLite file or InfluxDB.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sqlite", metavar="FILE", help="SQLite file written by `picopower bridge --sqlite`")
    src.add_argument("--influx", metavar="URL", help="InfluxDB 1.x URL, e.g. http://127.0.0.1:8086")
    p.add_argument("--db", metavar="NAME", help="InfluxDB database (the seed's: telegraf)")
    p.add_argument("--series", metavar="S", help="SERIESNAME (measurement); default: all")
    p.add_argument("--since", default="24h", help="how much to show, ending at the newest reading (24h; 7d, all)")
    p.add_argument("--out", default="graph.png", metavar="PNG", help="output file (graph.png)")
    p.add_argument("--title", default="Power consumption")
    p.set_defaults(func=run)


def run(args):
    since = plot.parse_since(args.since)
    if not args.out.lower().endswith(".png"):
        raise UserError("--out must be a .png file, got %r" % args.out)
    if args.influx:
        if not args.db:
            raise UserError("--influx needs --db NAME (the seed's database is telegraf)")
        print("reading %s db %s ..." % (args.influx.split("@")[-1], args.db), file=sys.stderr, flush=True)
        data = plot.load_influx(args.influx, args.db, args.series, since)
    else:
        data = plot.load_sqlite(args.sqlite, args.series, since)
    n = sum(len(s) for s in data.values())
    print("drawing %d readings of %d meter%s ..." % (n, len(data), "" if len(data) == 1 else "s"),
          file=sys.stderr, flush=True)
    per = plot.render(data, args.out, args.title)
    for label, days in sorted(per.items()):
        for day, kwh in days.items():
            print("%s %s %.3f kWh" % (label, day.isoformat(), kwh))
    print("wrote %s" % args.out, file=sys.stderr)
    return 0
