"""Locates the board folder and loads its modules on the host, privately.

The board folder is exactly what goes on the Pico (main.py, lib/...). Its
modules import each other by bare name (`import power`), as on the device.
Putting board/lib on the host's sys.path would make every generic name there
(`config`, `app`, `message`, and a user's real `secrets.py`) a top-level module
of the host process, shadowing Python's own `secrets`. So the host loads each
board module as `picopower.firmware.<name>` and gives it an `__import__` that
answers bare board names with those private modules; everything else (the
standard library, or `machine` and `umqtt` stand-ins in tests) is imported
normally. Host code imports board modules from here:

    from picopower.firmware import config, app
"""

import builtins
import importlib.util
import os
import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
# A source checkout keeps the board folder beside the package; a wheel
# carries it inside the package. PICOPOWER_BOARD_DIR points elsewhere (tests).
BOARD_DIR = Path(os.environ["PICOPOWER_BOARD_DIR"]) if os.environ.get("PICOPOWER_BOARD_DIR") else next(
    (p for p in (_here.parent / "board", _here / "_board") if (p / "main.py").is_file()), _here.parent / "board")
LIB_DIR = BOARD_DIR / "lib"
PREFIX = __name__ + "."

_real_import = builtins.__import__


def names():
    """Module names the board's lib folder holds (a user's secrets.py included)."""
    return sorted(p.stem for p in LIB_DIR.glob("*.py") if "." not in p.stem)


def _board_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0:
        top = name.partition(".")[0]
        # `secrets` is the board's settings file even where none exists yet:
        # the firmware must then see an ImportError, never Python's own module.
        if top == "secrets" or (LIB_DIR / (top + ".py")).is_file():
            return sys.modules.get(PREFIX + top) or load(top)
    return _real_import(name, globals, locals, fromlist, level)


_builtins = dict(builtins.__dict__)
_builtins["__import__"] = _board_import


def load(name, fresh=False):
    """The board module `name`, loaded once (again with `fresh`, e.g. after a
    test has put stand-ins for `machine` or `umqtt` in place)."""
    full = PREFIX + name
    if not fresh and full in sys.modules:
        return sys.modules[full]
    path = LIB_DIR / (name + ".py")
    if not path.is_file():
        raise ImportError("no board module %r in %s" % (name, LIB_DIR), name=name)
    spec = importlib.util.spec_from_file_location(full, path)
    module = importlib.util.module_from_spec(spec)
    module.__builtins__ = _builtins
    sys.modules[full] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(full, None)
        raise
    globals()[name] = module
    return module


def run(code, namespace=None):
    """exec() board-style code (bare imports of board modules) on the host,
    as the tests do with snippets that also run under MicroPython."""
    namespace = {} if namespace is None else namespace
    namespace["__builtins__"] = _builtins
    exec(code, namespace)
    return namespace


def unload(name):
    """Forget board module `name` (tests that load it over stand-ins)."""
    sys.modules.pop(PREFIX + name, None)
    globals().pop(name, None)


app = load("app")
clock = load("clock")
config = load("config")
discovery = load("discovery")
energy = load("energy")
link = load("link")
message = load("message")
outbox = load("outbox")
power = load("power")
pulses = load("pulses")
status = load("status")
ticks = load("ticks")


def __getattr__(name):
    # Modules added to board/lib later (or by another helper) load on first use.
    if (LIB_DIR / (name + ".py")).is_file() and name not in ("board", "main", "secrets"):
        return load(name)
    raise AttributeError(name)


def board_files():
    """Every file that goes on the board, as (path on the board, local path)."""
    out = []
    for p in sorted(BOARD_DIR.rglob("*.py")):
        rel = p.relative_to(BOARD_DIR).as_posix()
        if rel == "lib/secrets.py" or "__pycache__" in rel:
            continue
        out.append((rel, p))
    return out
