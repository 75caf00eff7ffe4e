"""picopower demo: broker, virtual boards, bridge, live dashboard and a graph; nothing to install."""

import argparse
import os
import sqlite3
import sys
import time
from datetime import datetime

from picopower import dashboard, plot
from picopower.demo import TOPIC, Demo
from picopower.errors import UserError

EXAMPLE = """examples:
  picopower demo                         # 3 houses, a virtual day in about a minute; Ctrl-C to stop early
  picopower demo --meters 1 --speed 60 --hours 2
  picopower demo --duration 20 --no-live --out day.png --db day.sqlite

What runs, all in this process: an MQTT broker (amqtt) on a free 127.0.0.1
port; virtual Pico Ws running the firmware's own code, counting the pulses a
household day makes (fridge, kettle, oven, lights); the bridge storing each
reading in SQLite; a subscriber feeding the dashboard. At the end the boards'
queues are drained and the graph is drawn from the SQLite file
(`picopower plot --sqlite demo.sqlite --live` draws it again). The graph's
bottom right compares the stored (revised) power with what was published
live over the 20 quiet minutes the boards' revisions changed most."""

MARK = "picopower_demo"


def register(sub):
    p = sub.add_parser("demo", help="the whole chain on this PC: broker, virtual boards, bridge, dashboard, graph",
                       description="Runs an embedded MQTT broker, virtual Pico Ws with the real firmware on an "
                                   "accelerated household day, and the bridge into SQLite; shows a live "
                                   "dashboard and writes a PNG graph on exit.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meters", type=int, default=3, metavar="N", help="virtual boards (3)")
    p.add_argument("--speed", type=float, default=1440, metavar="X",
                   help="virtual seconds per real second (1440: a day per minute, if this PC keeps up)")
    p.add_argument("--hours", type=float, default=24, metavar="H", help="virtual hours to run (24)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S real seconds")
    p.add_argument("--out", default="demo.png", metavar="PNG", help="graph written on exit (demo.png)")
    p.add_argument("--db", default="demo.sqlite", metavar="FILE", help="SQLite file of the readings (demo.sqlite)")
    p.add_argument("--no-live", dest="live", action="store_false",
                   help="plain progress lines instead of the live dashboard")
    p.set_defaults(func=run)


def prepare_db(path):
    """Start from an empty file; only a previous demo's file is ever replaced."""
    if os.path.exists(path):
        try:
            db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
            try:
                ok = db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (MARK,)).fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            ok = None
        if not ok:
            raise UserError("%s exists and was not made by `picopower demo`; choose another --db" % path)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE %s (started REAL)" % MARK)
    db.execute("INSERT INTO %s VALUES (?)" % MARK, (time.time(),))
    db.commit()
    db.close()


def status_lines(demo, colour=False):
    c = demo.counters()
    t = demo.start_unix_s + c["virtual_s"]
    wall = time.monotonic() - demo.started_wall
    pace = c["virtual_s"] / wall if wall > 0 else 0.0
    return ["virtual clock %s  (x%.0f asked, x%.0f achieved)" % (
                datetime.fromtimestamp(t).strftime("%a %H:%M:%S"), demo.speed, pace),
            "boards: %d readings, %d published, %d queued | broker: %d messages | "
            "%s: %d stored, %d rejected" % (c["readings"], c["published"], c["queued"], c["seen"],
                                                  os.path.basename(demo.db), c["written"], c["rejected"])]


def run(args):
    if args.meters < 1 or args.meters > 20:
        raise UserError("--meters must be 1-20, got %d" % args.meters)
    if not 0 < args.hours <= 72:
        raise UserError("--hours must be above 0 and at most 72, got %s" % args.hours)
    if args.duration is not None and not 0 < args.duration <= 86400:
        raise UserError("--duration must be 0-86400 seconds, got %s" % args.duration)
    if not args.out.lower().endswith(".png"):
        raise UserError("--out must be a .png file, got %r" % args.out)
    tty = sys.stdout.isatty()
    live = args.live and tty
    say = _sayer(sys.stderr.isatty())
    demo = Demo(args.meters, args.speed, args.db)  # validates before anything starts
    prepare_db(args.db)
    say("starting an MQTT broker (amqtt), %d virtual board%s and the bridge to %s ..." % (
        args.meters, "" if args.meters == 1 else "s", args.db))
    demo.start()
    say("broker %s, topic %s; Ctrl-C stops and draws the graph" % (demo.broker.url, TOPIC))
    title = "picopower demo: %d virtual Pico W%s on %s" % (args.meters, "" if args.meters == 1 else "s", TOPIC)
    stopped = "the virtual %g h are over" % args.hours
    try:
        if live:
            from rich.live import Live
            with Live(dashboard.view(demo.monitor.meters, title=title, lines=status_lines(demo)),
                      refresh_per_second=4, transient=False) as view:
                try:
                    demo.run(args.duration, args.hours * 3600,
                             on_tick=lambda d: view.update(dashboard.view(d.monitor.meters, title=title,
                                                                          lines=status_lines(d))))
                except KeyboardInterrupt:
                    stopped = "stopped (Ctrl-C)"
        else:
            last = [0.0]

            def tick(d):
                if time.monotonic() - last[0] >= 2.0:
                    last[0] = time.monotonic()
                    print(" | ".join(status_lines(d)), flush=True)
            try:
                demo.run(args.duration, args.hours * 3600, on_tick=tick)
            except KeyboardInterrupt:
                stopped = "stopped (Ctrl-C)"
        if args.duration is not None and demo.virtual_s < args.hours * 3600 - 1 and not stopped.startswith("stopped"):
            stopped = "%g s are over" % args.duration
        say("%s; storing the readings still queued ..." % stopped)
        demo.finish()
    except BaseException:
        demo.close()
        raise
    if not live:
        sys.stdout.write(dashboard.text(dashboard.view(demo.monitor.meters, title=title, lines=status_lines(demo)),
                                        colour=False))
    data = plot.load_sqlite(args.db, None, None)
    live = plot.load_sqlite(args.db, None, None, table=plot.LIVE_TABLE)
    say("drawing %s ..." % args.out)
    per = plot.render(data, args.out, "picopower demo: power of %d virtual houses" % len(data), live=live)
    for label, days in sorted(per.items()):
        print("%s: %s" % (label, ", ".join("%s %.3f kWh" % (d.isoformat(), v) for d, v in days.items())))
    say("wrote %s and %s (%d readings)" % (args.out, args.db, sum(len(s) for s in data.values())))
    return 0


def _sayer(colour):
    def say(text):
        print(("\x1b[1m%s\x1b[0m" % text) if colour else text, file=sys.stderr, flush=True)
    return say
