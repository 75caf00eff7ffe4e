"""picopower plot (--sqlite FILE | --influx URL --db NAME) [--series S] [--since 24h] [--live] [--out graph.png]"""

import argparse
import sys

from picopower import plot
from picopower.errors import UserError

EXAMPLE = """examples:
  picopower plot --sqlite demo.sqlite --live --out demo.png
  picopower plot --influx http://127.0.0.1:8086 --db telegraf --series power --since 7d --out week.png

The window ends at the newest reading. Energy per day comes from the boards'
energy counter (or from power x time for boards that send no energy).
Power is the stored value: where a board sent a revision (its exact value
once the next pulse landed), that value. --live adds a panel comparing it
with what was published live over 20 quiet minutes; only the demo's file keeps
the live readings (table `live`), the bridge and Telegraf store revised ones."""


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
    p.add_argument("--live", action="store_true",
                   help="also compare with what was published live, over the 20 quiet minutes revisions changed "
                        "most (SQLite files of `picopower demo`, which keep table %s)" % plot.LIVE_TABLE)
    p.set_defaults(func=run)


def run(args):
    since = plot.parse_since(args.since)
    if not args.out.lower().endswith(".png"):
        raise UserError("--out must be a .png file, got %r" % args.out)
    if args.live and not args.sqlite:
        raise UserError("--live needs --sqlite FILE from `picopower demo`: InfluxDB keeps only the "
                        "revised values")
    if args.influx:
        if not args.db:
            raise UserError("--influx needs --db NAME (the seed's database is telegraf)")
        print("reading %s db %s ..." % (args.influx.split("@")[-1], args.db), file=sys.stderr, flush=True)
        data = plot.load_influx(args.influx, args.db, args.series, since)
    else:
        data = plot.load_sqlite(args.sqlite, args.series, since)
    live = None
    if args.live:
        try:
            live = plot.load_sqlite(args.sqlite, args.series, since, table=plot.LIVE_TABLE)
        except plot.Invalid:
            raise UserError("%s keeps no live readings (table %s): only `picopower demo` records them; "
                            "the bridge stores the revised values" % (args.sqlite, plot.LIVE_TABLE)) from None
    n = sum(len(s) for s in data.values())
    print("drawing %d readings of %d meter%s ..." % (n, len(data), "" if len(data) == 1 else "s"),
          file=sys.stderr, flush=True)
    per = plot.render(data, args.out, args.title, live=live)
    for label, days in sorted(per.items()):
        for day, kwh in days.items():
            print("%s %s %.3f kWh" % (label, day.isoformat(), kwh))
    print("wrote %s" % args.out, file=sys.stderr)
    return 0
