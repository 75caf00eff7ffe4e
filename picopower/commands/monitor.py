"""picopower monitor --broker URL --topic T [--once SECONDS]: a live table of the meters."""

import argparse
import sys
import time

from picopower import dashboard
from picopower.errors import UserError
from picopower.monitor import STATUS_FILTER, Monitor
from picopower.urls import parse_broker

EXAMPLE = """examples:
  picopower monitor --broker mqtt://192.168.1.10 --topic home/power
  picopower monitor --broker mqtt://user:pass@broker.lan:1883 --topic 'home/#'
  picopower monitor --broker mqtt://192.168.1.10 --topic home/power --once 30   # table after 30 s, exit

Watts, energy (kWh since installation), today's kWh, a sparkline of recent
power, when each meter was last heard from, and online/offline from the
availability topics picopower/<host>/status. Messages that are not readings
are counted and ignored. With --once the exit status is 1 if no meter was seen."""


def register(sub):
    p = sub.add_parser("monitor", help="live table of every meter publishing on a topic",
                       description="Subscribes to the boards' topic and their availability topics and shows "
                                   "every meter seen.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt[s]://[user:pass@]host[:port]")
    p.add_argument("--ca-file", default="", metavar="F", help="CA certificate to verify an mqtts:// broker")
    p.add_argument("--topic", required=True, action="append", metavar="T",
                   help="data topic (MQTT_TOPIC; wildcards allowed); repeat for several")
    p.add_argument("--status-topic", default=STATUS_FILTER, metavar="FILTER",
                   help="availability topics, with + where the host name is (%s)" % STATUS_FILTER)
    p.add_argument("--once", type=float, metavar="SECONDS",
                   help="listen this long, print the table once and exit")
    p.set_defaults(func=run)


def run(args):
    url = parse_broker(args.broker, args.ca_file)
    if args.status_topic.count("+") != 1:
        raise UserError("--status-topic needs exactly one + where the host name is, got %r" % args.status_topic)
    if args.once is not None and not 0 < args.once <= 86400:
        raise UserError("--once must be 0-86400 seconds, got %s" % args.once)
    tty = sys.stdout.isatty()
    print("connecting to %s ..." % url.safe, file=sys.stderr, flush=True)
    mon = Monitor(url, args.topic, args.status_topic).start()
    title = "meters on %s %s" % (url.safe, " ".join(args.topic))
    try:
        if args.once is not None:
            print("listening for %g s ..." % args.once, file=sys.stderr, flush=True)
            time.sleep(args.once)
            sys.stdout.write(dashboard.text(dashboard.view(mon.meters, title=title), colour=tty))
            return 0 if mon.meters.meters else 1
        if tty:
            from rich.live import Live
            with Live(dashboard.view(mon.meters, title=title), refresh_per_second=2, screen=False) as live:
                while True:
                    time.sleep(0.5)
                    live.update(dashboard.view(mon.meters, title=title))
        else:
            _plain(mon)
    finally:
        mon.stop()
    return 0


def _plain(mon):
    """Not a terminal: one line per new reading, no colour."""
    seen = {}
    while True:
        time.sleep(0.5)
        for m, status in mon.meters.rows():
            if seen.get((m.host, m.series)) != m.count:
                seen[(m.host, m.series)] = m.count
                print("%s %s/%s %.1f W %s kWh %s" % (
                    time.strftime("%H:%M:%S"), m.host, m.series, m.watts,
                    "-" if m.energy is None else "%.3f" % m.energy, status or "?"), flush=True)
