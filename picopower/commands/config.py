"""picopower config telegraf|mosquitto|acl|grafana [settings]: ready-to-use configuration."""

import argparse
import json
import sys

from picopower import configs
from picopower.errors import UserError
from picopower.urls import parse_broker

EXAMPLE = """examples:
  picopower config telegraf --broker mqtt://192.168.1.10 --topic home/power > telegraf.conf
  picopower config mosquitto > mosquitto.conf                  # anonymous, as in the original project
  picopower config mosquitto --password-file /etc/mosquitto/passwd --acl /etc/mosquitto/acl
  picopower config mosquitto --meters 200 --interval 10     # queues a day of 200 meters for a stopped bridge
  picopower config acl --host kitchen --host garage --topic home/power > /etc/mosquitto/acl
  picopower config grafana --series power > dashboard.json     # Grafana: Dashboards > Import

Values are checked with the firmware's own validator, so what you put here
matches what the boards publish (MQTT_TOPIC, SERIESNAME, HOSTNAME)."""

KINDS = ("telegraf", "mosquitto", "acl", "grafana")


def register(sub):
    p = sub.add_parser("config", help="print telegraf.conf, mosquitto.conf, a Mosquitto ACL or a Grafana dashboard",
                       description="Prints a configuration file for the route board -> Mosquitto -> Telegraf -> "
                                   "InfluxDB -> Grafana, filled in from the same settings as the boards.",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS, help="which file to print")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL",
                   help="the MQTT broker, mqtt[s]://[user@]host[:port] (mqtt://127.0.0.1:1883); "
                        "its port is Mosquitto's listener")
    p.add_argument("--topic", action="append", metavar="T",
                   help="MQTT_TOPIC of the boards (home/power); repeat for several")
    p.add_argument("--series", default="power", metavar="S", help="SERIESNAME, the InfluxDB measurement (power)")
    p.add_argument("--host", action="append", metavar="H",
                   help="HOSTNAME of a board, for the ACL (picopower); repeat for several")
    p.add_argument("--db", default="telegraf", metavar="NAME", help="InfluxDB database (telegraf)")
    p.add_argument("--influx", default="http://127.0.0.1:8086", metavar="URL", help="InfluxDB URL for Telegraf")
    p.add_argument("--password-file", default="", metavar="F",
                   help="mosquitto: require a login; accounts in F (made with mosquitto_passwd)")
    p.add_argument("--acl", default="", metavar="F",
                   help="mosquitto: restrict topics with the ACL file F (print one with `config acl`)")
    p.add_argument("--reader", default="telegraf", metavar="USER", help="acl: the account that reads everything")
    p.add_argument("--bind", default="0.0.0.0", metavar="ADDR", help="mosquitto: listen address (0.0.0.0)")
    p.add_argument("--meters", type=int, default=1, metavar="N",
                   help="mosquitto: meters (channels) publishing; the queue holds a day of their readings (1)")
    p.add_argument("--interval", type=int, default=10, metavar="S",
                   help="mosquitto: the boards' REPORT_INTERVAL_S (10)")
    p.add_argument("--data-dir", default="/var/lib/mosquitto", metavar="D",
                   help="mosquitto: where it saves sessions and queued messages (/var/lib/mosquitto)")
    p.set_defaults(func=run)


def _check_names(topics, series, hosts, filters=False):
    """Validate with the firmware's own rules (config.check).

    With `filters`, + and # are allowed: Telegraf subscribes to filters."""
    from picopower.firmware import config
    for topic in topics:
        if filters:
            topic = topic.replace("+", "x").replace("#", "x")
        for host in hosts:
            _, errors, _ = config.check({"WIFI_SSID": "x", "MQTT_SERVER": "127.0.0.1", "MQTT_TOPIC": topic,
                                         "SERIESNAME": series, "HOSTNAME": host})
            if errors:
                raise UserError(errors[0])


def _check_path(name, value):
    if any(c in value for c in "\r\n\0") or value != value.strip():
        raise UserError("%s must be a plain file path, got %r" % (name, value))


def render(args):
    broker = parse_broker(args.broker)
    topics = args.topic or ["home/power"]
    hosts = args.host or ["picopower"]
    _check_names(topics, args.series, hosts, filters=args.kind == "telegraf")
    for name in ("password_file", "acl", "data_dir"):
        _check_path("--" + name.replace("_", "-"), getattr(args, name))
    if not args.db or any(c in args.db for c in "\"\n\r"):
        raise UserError("--db must be a database name, got %r" % args.db)
    if args.kind == "telegraf":
        return configs.telegraf(broker, topics, args.db, args.influx)
    if args.kind == "mosquitto":
        if broker.tls:
            raise UserError("mosquitto: only plain mqtt:// listeners are generated; "
                             "see the Mosquitto docs for certfile/keyfile")
        if not 1 <= args.meters <= 10000000:
            raise UserError("--meters must be 1-10000000, got %d" % args.meters)
        if not 1 <= args.interval <= 3600:
            raise UserError("--interval must be 1-3600 seconds (REPORT_INTERVAL_S), got %d" % args.interval)
        return configs.mosquitto(broker.port, args.bind, args.password_file, args.acl, args.data_dir or "/",
                                 args.meters, args.interval)
    if args.kind == "acl":
        if len(topics) != 1:
            raise UserError("acl: give exactly one --topic (the boards' MQTT_TOPIC)")
        return configs.acl(hosts, topics[0], args.reader)
    return json.dumps(configs.grafana(args.series), indent=2) + "\n"


def run(args):
    sys.stdout.write(render(args))
    sys.stdout.flush()
