"""The command line's one error seam: the project's own UserError is one line and exit
status 2; anything else is a bug and keeps its traceback."""

import subprocess
import sys

import pytest

from picopower import cli
from picopower.errors import Invalid, Unavailable, UserError

RAISE = """
import sys
import picopower.commands.config as command
from picopower import cli, errors

def run(args):
    raise {exc}

command.run = run
sys.exit(cli.main(["config", "telegraf"]))
"""


def run_raising(exc):
    return subprocess.run([sys.executable, "-c", RAISE.format(exc=exc)], capture_output=True, text=True, timeout=60)


def test_a_user_error_is_one_line_on_stderr_and_exit_status_2():
    r = run_raising('errors.Unavailable("cannot reach the broker mqtt://127.0.0.1:1883: refused")')
    assert r.returncode == 2
    assert r.stderr == "picopower config: error: cannot reach the broker mqtt://127.0.0.1:1883: refused\n"


def test_a_bug_raising_valueerror_shows_its_traceback_and_exit_status_1():
    r = run_raising('ValueError("int() got a bad literal deep in the code")')
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr and r.stderr.count("\n") > 3
    assert "ValueError: int() got a bad literal deep in the code" in r.stderr


def test_a_bug_raising_oserror_is_not_mistaken_for_an_unreachable_server(monkeypatch):
    import picopower.commands.config as command

    def run(args):
        raise OSError("a bug")

    monkeypatch.setattr(command, "run", run)
    with pytest.raises(OSError, match="a bug"):
        cli.main(["config", "telegraf"])


def test_user_errors_stay_the_builtin_kind_that_callers_already_catch():
    assert issubclass(Invalid, ValueError) and issubclass(Invalid, UserError)
    assert issubclass(Unavailable, OSError) and issubclass(Unavailable, UserError)
    assert cli.CliError is UserError
