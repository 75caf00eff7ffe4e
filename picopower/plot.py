"""Power over time and energy per day, from the bridge's SQLite file or InfluxDB.

`load_sqlite()` / `load_influx()` return {label: Series}, one per host (or
host/series when several measurements are shown); `daily_kwh()` gives the
energy per calendar day from the firmware's `energy` counter (differences
between consecutive readings, split at midnight in proportion to time, a
counter reset skipped), or from the power when a reading has no energy
(seed-format boards: power x time, gaps over 15 min not filled);
`render()` draws the Grafana-like picture with matplotlib (Agg backend).

Stored values are revised ones: a board's revision (its exact value for a
past window, once the next pulse lands) overwrites the live reading in
InfluxDB and SQLite. Given what was published live as well (`picopower demo`
keeps it in the table `live`), `render()` adds a panel comparing the two over
the quiet 20 minutes that revisions changed most (`quiet_stretch()`), as at
standby a pulse comes only every minute or more and the live guess is
furthest from the truth there, while at kettle scale the two look identical.

The window (--since) ends at the newest reading, not at this PC's clock, so
a file made yesterday (or by the demo's accelerated clock) still plots.
"""

import json
import math
from bisect import bisect_left, bisect_right
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

from picopower.errors import Invalid, Unavailable

MAX_GAP_S = 900
LIVE_TABLE = "live"  # the demo's table of readings as published live (no revisions)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Series:
    def __init__(self, label):
        self.label = label
        self.t = []       # unix seconds, increasing
        self.power = []   # W
        self.energy = []  # kWh or None

    def add(self, t, power, energy):
        self.t.append(float(t))
        self.power.append(float(power))
        self.energy.append(None if energy is None else float(energy))

    def __len__(self):
        return len(self.t)


def parse_since(text):
    """'24h', '7d', '90m', '3600s', '2w' or 'all' -> seconds (None for all)."""
    text = text.strip().lower()
    if text == "all":
        return None
    try:
        n = float(text[:-1]) if text[-1:] in UNITS else float(text)
        unit = UNITS.get(text[-1:], 1)
    except (ValueError, IndexError):
        raise Invalid("--since must look like 24h, 7d, 90m or all, got %r" % text) from None
    if not math.isfinite(n) or n <= 0:
        raise Invalid("--since must be positive, got %r" % text)
    return n * unit


def _label(host, measurement, many):
    return "%s/%s" % (host, measurement) if many else host


def load_sqlite(path, series=None, since_s=86400.0, table="points"):
    if not os.path.isfile(path):
        raise Unavailable("no such SQLite file: %s" % path)
    try:
        db = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(os.path.abspath(path)), uri=True, timeout=5)
        try:
            cols = {r[1] for r in db.execute('PRAGMA table_info("%s")' % table)}
            if not {"measurement", "host", "time", "power"} <= cols:
                raise Invalid("%s has no table of readings (%s) written by `picopower bridge`" % (path, table))
            energy = '"energy"' if "energy" in cols else "NULL"
            where, args = "", []
            if series:
                where, args = " WHERE measurement = ?", [series]
            newest = db.execute('SELECT max(time) FROM "%s"%s' % (table, where), args).fetchone()[0]
            if newest is None:
                raise Invalid("%s has no readings%s" % (path, " for series %r" % series if series else ""))
            if since_s is not None:
                where += (" AND" if where else " WHERE") + " time >= ?"
                args.append(newest - since_s)
            rows = db.execute('SELECT measurement, host, time, power, %s FROM "%s"%s ORDER BY time'
                              % (energy, table, where), args).fetchall()
        finally:
            db.close()
    except sqlite3.Error as e:
        raise Unavailable("cannot read %s: %s" % (path, e)) from None
    many = len({r[0] for r in rows}) > 1
    out = {}
    for m, host, t, p, e in rows:
        if p is None:
            continue
        label = _label(host, m, many)
        out.setdefault(label, Series(label)).add(t, p, e)
    return out


def _influx(url, db, q):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("InfluxDB URL must look like http://HOST:8086, got %r" % url)
    base = "%s://%s:%d" % (parts.scheme, parts.hostname, parts.port or 8086)
    query = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"})
    req = urllib.request.Request(base + "/query?" + query)
    if parts.username:
        import base64
        cred = "%s:%s" % (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        req.add_header("Authorization", "Basic " + base64.b64encode(cred.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            data = json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error", "")
        except ValueError:
            msg = ""
        raise Unavailable("InfluxDB %s answered %d %s" % (base, e.code, msg or e.reason)) from None
    except (urllib.error.URLError, OSError) as e:
        raise Unavailable("cannot reach InfluxDB at %s: %s" % (base, getattr(e, "reason", e))) from None
    except ValueError:
        raise Unavailable("InfluxDB %s did not answer JSON" % base) from None
    results = data.get("results") or [{}]
    if data.get("error") or results[0].get("error"):
        raise Invalid("InfluxDB: %s" % (data.get("error") or results[0].get("error")))
    return results[0].get("series") or []


def _ident(name):
    return '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')


def load_influx(url, db, series=None, since_s=86400.0):
    if series:
        names = [series]
    else:
        names = [row[0] for s in _influx(url, db, "SHOW MEASUREMENTS") for row in s.get("values", [])]
    out = {}
    many = len(names) > 1
    found = False
    for name in names:
        last = _influx(url, db, 'SELECT last("power") FROM %s' % _ident(name))
        if not last:
            continue
        found = True
        newest_ms = last[0]["values"][0][0]
        where = "" if since_s is None else " WHERE time >= %dms" % (newest_ms - since_s * 1000)
        for s in _influx(url, db, 'SELECT * FROM %s%s GROUP BY "host"' % (_ident(name), where)):
            host = (s.get("tags") or {}).get("host", "")
            cols = s["columns"]
            ip, ie = cols.index("power"), (cols.index("energy") if "energy" in cols else None)
            label = _label(host, name, many)
            ser = out.setdefault(label, Series(label))
            for row in s["values"]:
                if row[ip] is None:
                    continue
                ser.add(row[0] / 1000.0, row[ip], None if ie is None else row[ie])
    if not found:
        raise Invalid("InfluxDB database %r has no readings%s" % (db, " in %r" % series if series else ""))
    return out


# --- energy per day ---------------------------------------------------------

def _split_by_day(t0, t1, kwh, tz, out):
    """Add `kwh` spent evenly over [t0, t1] to the calendar days it covers."""
    if t1 <= t0:
        day = datetime.fromtimestamp(t1, tz).date()
        out[day] = out.get(day, 0.0) + kwh
        return
    t = t0
    while t < t1:
        d = datetime.fromtimestamp(t, tz)
        midnight = datetime.combine(d.date() + timedelta(days=1), datetime.min.time())
        midnight = midnight.replace(tzinfo=tz) if tz is not None else midnight
        end = min(t1, midnight.timestamp())
        out[d.date()] = out.get(d.date(), 0.0) + kwh * (end - t) / (t1 - t0)
        t = end


def daily_kwh(series, tz=None):
    """{date: kWh} for one Series; `tz` None means this machine's local time."""
    out = {}
    for i in range(1, len(series.t)):
        t0, t1 = series.t[i - 1], series.t[i]
        e0, e1 = series.energy[i - 1], series.energy[i]
        if e0 is not None and e1 is not None:
            d = e1 - e0
            if d < 0:
                continue  # the counter was reset (new board, wiped flash)
        elif t1 - t0 <= MAX_GAP_S:
            d = series.power[i] * (t1 - t0) / 3.6e6  # the reading is the mean power of its window
        else:
            continue
        _split_by_day(t0, t1, d, tz, out)
    return dict(sorted(out.items()))


# --- stored (revised) against live ------------------------------------------

class Stretch:
    """One host's readings over [t0, t1]: `stored` (revised) and `live` Series."""

    def __init__(self, label, t0, t1, stored, live):
        self.label, self.t0, self.t1, self.stored, self.live = label, t0, t1, stored, live

    def differences(self):
        """|stored - live| in W at each timestamp both have."""
        lp = dict(zip(self.live.t, self.live.power))
        return [abs(p - lp[t]) for t, p in zip(self.stored.t, self.stored.power) if t in lp]


def _part(s, t0, t1):
    out = Series(s.label)
    i, j = bisect_left(s.t, t0), bisect_right(s.t, t1)
    out.t, out.power, out.energy = s.t[i:j], s.power[i:j], s.energy[i:j]
    return out


def quiet_stretch(stored, live, span_s=1200.0, step_s=300.0):
    """Among the quietest quarter of `span_s` stretches (lowest mean stored
    power), the one whose live readings the revisions changed most (sum of
    |stored - live|), over every host: a Stretch, or None without live data."""
    best = None
    for label in sorted(stored):
        s, lv = stored[label], live.get(label)
        if lv is None or len(s) < 2 or not len(lv):
            continue
        lp = dict(zip(lv.t, lv.power))
        span = min(span_s, s.t[-1] - s.t[0])
        cands = []
        for n in range(int((s.t[-1] - s.t[0] - span) // step_s) + 1):
            t0 = s.t[0] + n * step_s
            i, j = bisect_left(s.t, t0), bisect_right(s.t, t0 + span)
            if j - i < 2:
                continue  # a gap in the readings (board offline, bridge stopped)
            mean = sum(s.power[i:j]) / (j - i)
            moved = sum(abs(s.power[k] - lp[s.t[k]]) for k in range(i, j) if s.t[k] in lp)
            cands.append((mean, -moved, t0))
        if not cands:
            continue
        cands.sort()
        quiet = cands[:max(1, len(cands) // 4)]
        _, neg, t0 = min(quiet, key=lambda c: c[1])
        if best is None or -neg > best[0]:
            best = (-neg, label, t0, span)
    if best is None:
        return None
    _, label, t0, span = best
    s, lp = stored[label], dict(zip(live[label].t, live[label].power))
    i, j = bisect_left(s.t, t0), bisect_right(s.t, t0 + span)
    # Show the largest correction a quarter in, so what led to it (often a switch-off) is in view.
    k = max(range(i, j), key=lambda k: abs(s.power[k] - lp.get(s.t[k], s.power[k])))
    t0 = min(max(s.t[0], s.t[k] - span / 4), s.t[-1] - span)
    return Stretch(label, t0, t0 + span, _part(s, t0, t0 + span), _part(live[label], t0, t0 + span))


# --- the picture -------------------------------------------------------------

WIDTH_PX, HEIGHT_PX, DPI = 1200, 700, 100
COLOURS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a"]


def render(data, out, title="Power consumption", tz=None, live=None):
    """Write the PNG: power per host over time (top), kWh per day per host (bottom);
    with `live` ({label: Series} as published live) the bottom right compares
    stored and live over `quiet_stretch()`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    if not data or not any(len(s) for s in data.values()):
        raise Invalid("nothing to plot: no readings")
    bg, panel, grid, fg = "#111217", "#181b1f", "#2c3235", "#ccccdc"
    fig = plt.figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor=bg)
    stretch = quiet_stretch(data, live) if live else None
    gs = fig.add_gridspec(2, 2 if stretch else 1, height_ratios=[2.3, 1], hspace=0.38, wspace=0.12,
                          left=0.07, right=0.98, top=0.92, bottom=0.08)
    ax, bx = fig.add_subplot(gs[0, :]), fig.add_subplot(gs[1, 0])
    cx = fig.add_subplot(gs[1, 1]) if stretch else None
    for a in (ax, bx) + ((cx,) if cx else ()):
        a.set_facecolor(panel)
        a.tick_params(colors=fg, labelsize=9)
        for s in a.spines.values():
            s.set_color(grid)
        a.grid(True, color=grid, linewidth=0.6)
        a.set_axisbelow(True)
    zone = tz if tz is not None else datetime.now().astimezone().tzinfo
    days_all = set()
    per = {}
    colour = {}
    for i, (label, s) in enumerate(sorted(data.items())):
        c = colour[label] = COLOURS[i % len(COLOURS)]
        times = [datetime.fromtimestamp(t, zone) for t in s.t]
        ax.step(times, s.power, where="pre", color=c, linewidth=1.1, label=label)
        ax.fill_between(times, s.power, step="pre", color=c, alpha=0.12)
        per[label] = daily_kwh(s, tz)
        days_all.update(per[label])
    ax.set_title(title, color=fg, loc="left", fontsize=12)
    ax.set_ylabel("W", color=fg)
    ax.set_ylim(bottom=0)
    loc = mdates.AutoDateLocator(tz=zone)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=zone))
    leg = ax.legend(loc="upper left", facecolor=panel, edgecolor=grid, fontsize=9)
    for t in leg.get_texts():
        t.set_color(fg)
    days = sorted(days_all)
    n = max(1, len(per))
    width = 0.8 / n
    for i, (label, d) in enumerate(sorted(per.items())):
        xs = [k + (i - (n - 1) / 2) * width for k in range(len(days))]
        vals = [d.get(day, 0.0) for day in days]
        bars = bx.bar(xs, vals, width=width * 0.95, color=COLOURS[i % len(COLOURS)], label=label)
        for b, v in zip(bars, vals):
            bx.annotate("%.2f" % v, (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                        color=fg, fontsize=8, xytext=(0, 2), textcoords="offset points")
    bx.set_xticks(range(len(days)))
    bx.set_xticklabels([d.strftime("%a %d %b") for d in days])
    bx.set_title("Energy per day (kWh)", color=fg, loc="left", fontsize=11)
    bx.set_ylabel("kWh", color=fg)
    top = max([v for d in per.values() for v in d.values()] + [0.001])
    bx.set_ylim(0, top * 1.25)
    if stretch:
        _draw_stretch(cx, stretch, colour[stretch.label], zone, panel, grid, fg)
    fig.savefig(out, dpi=DPI, facecolor=bg)
    plt.close(fig)
    return per


def _draw_stretch(cx, st, c, zone, panel, grid, fg):
    import matplotlib.dates as mdates
    for s, colour, width, style, name in ((st.live, "#9aa0ab", 1.0, (0, (3, 2)), "published live"),
                                          (st.stored, c, 1.5, "-", "stored (revised)")):
        cx.step([datetime.fromtimestamp(t, zone) for t in s.t], s.power, where="pre", color=colour,
                linewidth=width, linestyle=style, label=name)
    d = st.differences()
    cx.set_title("Close-up at standby, %s: %d readings revised, up to %.0f W"
                 % (st.label, sum(1 for x in d if x > 0), max(d + [0.0])), color=fg, loc="left", fontsize=11)
    cx.set_ylabel("W", color=fg)
    cx.set_ylim(bottom=0)
    cx.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=zone))
    leg = cx.legend(loc="upper right", facecolor=panel, edgecolor=grid, fontsize=8)
    for t in leg.get_texts():
        t.set_color(fg)
