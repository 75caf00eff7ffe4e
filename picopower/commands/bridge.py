"""picopower bridge --broker URL --topic T (--influx URL --db NAME | --sqlite FILE)"""

import argparse
import logging
import os
import signal
import sys
import threading

EXAMPLE = """examples:
  picopower bridge --broker mqtt://127.0.0.1:1883 --topic power --sqlite power.db
  picopower bridge --broker mqtt://user:pass@broker:1883 --topic power \\
                   --influx http://127.0.0.1:8086 --db telegraf --stats-interval 60
  picopower bridge --broker mqtt://broker:1883 --topic power --share bridges \\
                   --client-id bridge-2 --influx http://127.0.0.1:8086   # one of several

Does what Telegraf does in the seed (json_name_key measurement, json_time_key
timestamp, json_time_format unix, tag_keys host). At least once: persistent
MQTT session (QoS 1), a message is acknowledged only once written or spooled
to disk. Counters are printed on exit, on SIGUSR1 and every --stats-interval s.
With --share GROUP several bridges (each its own --client-id) split the
messages between them; a bridge that dies finds its share waiting at the
broker when it comes back under the same client id."""


def register(sub):
    p = sub.add_parser("bridge", help="store MQTT readings in InfluxDB 1.x or SQLite (what Telegraf does)",
                       description="Subscribes to the board's topic, validates every message, and writes "
                                   "each reading once to InfluxDB 1.x (line protocol) or to a SQLite file.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://[user:pass@]host[:port] or mqtts://")
    p.add_argument("--topic", required=True, action="append", metavar="T",
                   help="topic filter to subscribe to (repeat for more); <T>/revised, the boards' "
                        "revisions of past readings, is subscribed to as well")
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--influx", metavar="URL", help="InfluxDB 1.x, http://host:port")
    dest.add_argument("--sqlite", metavar="FILE", help="SQLite database file (table `points`)")
    p.add_argument("--db", default="telegraf", metavar="NAME",
                   help="InfluxDB database, created if missing (telegraf)")
    p.add_argument("--ca-file", default="", metavar="F", help="CA certificate to verify an mqtts:// broker")
    p.add_argument("--spool-dir", metavar="D",
                   help="where to keep readings while the database is down "
                        "(default ~/.local/state/picopower/spool-<client id>)")
    p.add_argument("--spool-max-mb", type=float, default=100.0, metavar="MB",
                   help="spool size limit; when full, messages stay unacknowledged at the broker (100)")
    p.add_argument("--stats-interval", type=float, default=0, metavar="S",
                   help="print the counters every S seconds (0: only on exit and SIGUSR1)")
    p.add_argument("--share", metavar="GROUP",
                   help="subscribe as a member of shared subscription GROUP ($share/GROUP/<topic>): "
                        "the broker hands each message to one bridge of the group")
    p.add_argument("--client-id", metavar="ID",
                   help="MQTT client id of the persistent session (default picopower-bridge-<hostname>)")
    p.add_argument("--quiet", "-q", action="store_true", help="log only errors")
    p.set_defaults(func=run)


def run(args):
    from picopower.bridge import Bridge, default_client_id
    from picopower.errors import UserError
    from picopower.sinks import InfluxSink, SqliteSink
    from picopower.urls import parse_broker

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.ca_file and not os.path.isfile(args.ca_file):
        raise UserError("--ca-file %s: no such file" % args.ca_file)
    url = parse_broker(args.broker, args.ca_file)
    if args.stats_interval < 0:
        raise UserError("--stats-interval must be 0 or more")
    if args.spool_max_mb <= 0:
        raise UserError("--spool-max-mb must be more than 0")
    client_id = args.client_id or default_client_id()
    sink = InfluxSink(args.influx, args.db) if args.influx else SqliteSink(args.sqlite)
    spool_dir = args.spool_dir
    if spool_dir is None:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        spool_dir = os.path.join(state, "picopower", "spool-" + client_id)
    from picopower.configs import with_revisions
    try:
        bridge = Bridge(url, with_revisions(args.topic), sink, spool_dir=spool_dir,
                        spool_max_bytes=int(args.spool_max_mb * 1024 * 1024), client_id=client_id,
                        stats_interval=args.stats_interval, stats_out=sys.stdout, share=args.share)
    except UserError:
        raise
    except OSError as e:  # the spool directory cannot be made or read
        raise UserError("--spool-dir %s: %s" % (spool_dir, e.strerror or e)) from None
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda s, f: bridge.print_stats())
    bridge.start()
    if bridge.spool is not None and bridge.spool.depth:
        logging.getLogger("picopower.bridge").warning("%d spooled readings in %s to write first",
                                                      bridge.spool.depth, spool_dir)
    try:
        while not done.wait(0.5):
            if bridge.error is not None:
                break
    finally:
        bridge.stop()
        bridge.print_stats()
    if bridge.error is not None:
        raise RuntimeError("bridge worker failed (traceback above)") from bridge.error
    return 0
