"""The `picopower` command: one sub-command per module in picopower/commands.

Every command fails with one line on standard error and exit status 2,
never a traceback, for the errors a user can cause: bad flags, bad files, an
unreachable broker or database, a missing board. Those are raised as
picopower.errors.UserError (or a subclass); any other exception is a bug and
shows its traceback.
"""

import argparse
import importlib
import sys

from picopower import __version__
from picopower.errors import UserError

COMMANDS = ("demo", "simulate", "bridge", "replay", "monitor", "plot", "deploy", "config")


CliError = UserError  # the name the commands were written with


def build_parser():
    parser = argparse.ArgumentParser(
        prog="picopower",
        description="Host companion of the Pico Power Meter: a virtual Pico, replay, "
                    "an MQTT-to-InfluxDB/SQLite bridge, a demo, a deployer and plots.",
        epilog="Start with: picopower demo",
    )
    parser.add_argument("--version", action="version", version="picopower " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module("picopower.commands." + name)
        except ModuleNotFoundError as e:
            if e.name != "picopower.commands." + name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except UserError as e:
        print("picopower %s: error: %s" % (args.command, e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
