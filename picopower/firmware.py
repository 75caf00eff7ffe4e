"""Locates the board folder and makes its modules importable on the host.

The board folder is exactly what goes on the Pico (main.py, lib/...). Its
modules import each other by bare name (`import power`), as on the device,
so the host puts board/lib on sys.path once, here, and imports them the same
way. A board module name that shadowed a standard library module would break
that; tests/test_layout.py guards against it.
"""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
# A source checkout keeps the board folder beside the package; a wheel
# carries it inside the package.
BOARD_DIR = next((p for p in (_here.parent / "board", _here / "_board") if (p / "main.py").is_file()),
                 _here.parent / "board")
LIB_DIR = BOARD_DIR / "lib"

if str(LIB_DIR) not in sys.path:
    sys.path.insert(0, str(LIB_DIR))

import app  # noqa: E402
import clock  # noqa: E402
import config  # noqa: E402
import energy  # noqa: E402
import link  # noqa: E402
import message  # noqa: E402
import outbox  # noqa: E402
import power  # noqa: E402
import pulses  # noqa: E402
import status  # noqa: E402
import ticks  # noqa: E402

__all__ = ["BOARD_DIR", "LIB_DIR", "app", "clock", "config", "energy", "link", "message",
           "outbox", "power", "pulses", "status", "ticks"]


def board_files():
    """Every file that goes on the board, as (path on the board, local path)."""
    out = []
    for p in sorted(BOARD_DIR.rglob("*.py")):
        rel = p.relative_to(BOARD_DIR).as_posix()
        if rel == "lib/secrets.py" or "__pycache__" in rel:
            continue
        out.append((rel, p))
    return out
