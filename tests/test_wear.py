"""Flash wear of the firmware's own files on a real littlefs (bench/wear.py, one day each)."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("wear", Path(__file__).resolve().parent.parent / "bench" / "wear.py")
wear = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wear)


def test_a_day_online_costs_under_150_erases_so_the_flash_lasts_over_300_years():
    r = wear.scenario("online", 1, True)
    assert r["per_day"] < 150 and r["years"] > 300


def test_a_day_offline_spills_8640_readings_for_under_200_erases_and_over_20_years_even_on_the_free_blocks_alone():
    r = wear.scenario("offline", 1, False)
    assert r["queued"] == 8640 and r["dropped"] == 0
    assert r["per_day"] < 200 and r["years"] > 200 and r["floor_years"] > 20
