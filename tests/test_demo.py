"""`picopower demo`: a short non-live run stores the boards' readings in SQLite and draws the PNG."""

import sqlite3

from PIL import Image

from picopower import cli, plot
from picopower.demo import EmbeddedBroker, household_days


def test_short_demo_run_stores_every_published_reading_and_draws_the_graph(tmp_path, capsys):
    db, png = tmp_path / "demo.sqlite", tmp_path / "demo.png"
    rc = cli.main(["demo", "--meters", "2", "--speed", "100000", "--hours", "3", "--duration", "20",
                   "--no-live", "--db", str(db), "--out", str(png)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    rows = sqlite3.connect(str(db)).execute(
        "SELECT host, count(*), min(time), max(time), max(energy) - min(energy) FROM points GROUP BY host").fetchall()
    assert [r[0] for r in rows] == ["house-1", "house-2"]
    for host, n, t0, t1, kwh in rows:
        # one reading every 10 virtual s for the 3 virtual hours, none lost between board and SQLite
        assert 3 * 360 - 2 <= n <= 3 * 360 + 1 and t1 - t0 >= 3 * 3600 - 20
        assert kwh > 0.05
    last = [ln for ln in out.splitlines() if ln.startswith("virtual clock")][-1]
    published = int(out.split(" published")[-2].split()[-1])
    # published counts the boards' revisions too: each overwrote its reading's row
    assert sum(r[1] for r in rows) <= published <= 1.2 * sum(r[1] for r in rows)
    assert "\x1b[" not in out + err and "Traceback" not in err and last
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (plot.WIDTH_PX, plot.HEIGHT_PX)


def test_demo_keeps_the_live_readings_beside_the_revised_ones_and_its_close_up_shows_them_20_w_apart(tmp_path):
    db, png = tmp_path / "demo.sqlite", tmp_path / "demo.png"
    assert cli.main(["demo", "--meters", "1", "--speed", "100000", "--hours", "6", "--duration", "30",
                     "--no-live", "--db", str(db), "--out", str(png)]) == 0
    stored = plot.load_sqlite(str(db), None, None)
    live = plot.load_sqlite(str(db), None, None, table=plot.LIVE_TABLE)
    assert list(stored) == list(live) == ["house"]
    s, lv = stored["house"], live["house"]
    assert s.t == lv.t and len(s) >= 6 * 360 - 2  # every reading once in each table
    moved = sum(1 for a, b in zip(s.power, lv.power) if a != b)
    st = plot.quiet_stretch(stored, live)
    print("demo, 6 virtual hours: %d of %d readings revised; close-up %s, stored mean %.0f W, "
          "largest |stored - live| %.1f W" % (moved, len(s), st.label, sum(st.stored.power) / len(st.stored),
                                              max(st.differences())))
    assert 0 < moved < len(s) / 5  # measured: 65 of 2160
    assert sum(st.stored.power) / len(st.stored) < 200 and max(st.differences()) >= 20  # measured: 86 W, 57.4 W


def test_demo_refuses_to_overwrite_a_database_it_did_not_make(tmp_path, capsys):
    db = tmp_path / "mine.sqlite"
    sqlite3.connect(str(db)).execute("CREATE TABLE points (x)").connection.commit()
    assert cli.main(["demo", "--duration", "1", "--no-live", "--db", str(db), "--out", str(tmp_path / "x.png")]) == 2
    assert "was not made by `picopower demo`" in capsys.readouterr().err
    assert sqlite3.connect(str(db)).execute("SELECT name FROM sqlite_master").fetchall() == [("points",)]


def test_bad_demo_flags_are_one_line_errors(capsys):
    for argv in (["--meters", "0"], ["--speed", "-1"], ["--out", "x.jpg"], ["--hours", "0"]):
        assert cli.main(["demo", "--no-live"] + argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("picopower demo: error:")


def test_embedded_broker_carries_a_retained_message_to_a_late_subscriber():
    import threading
    import paho.mqtt.client as mqtt
    broker = EmbeddedBroker().start()
    try:
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", broker.port, 10)
        pub.loop_start()
        pub.publish("picopower/x/status", "online", qos=1, retain=True).wait_for_publish(5)
        got = threading.Event()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.on_connect = lambda c, u, f, r, p: c.subscribe("picopower/+/status", 1)
        sub.on_message = lambda c, u, m: got.set() if m.payload == b"online" else None
        sub.connect("127.0.0.1", broker.port, 10)
        sub.loop_start()
        assert got.wait(5)
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
    finally:
        broker.stop()


def test_household_days_differ_per_house_and_cover_three_days():
    a, b = household_days(0), household_days(1)
    assert a.times[-1] >= 2 * 86400 and b.times[-1] >= 2 * 86400
    assert a.energy_to(86400) != b.energy_to(86400)
    assert 1.0e6 * 3.6 < a.energy_to(86400) < 30 * 3.6e6  # between 1 and 30 kWh a day
