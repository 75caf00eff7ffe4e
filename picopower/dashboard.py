"""The terminal view of `picopower monitor` and `picopower demo` (rich).

`view(meters, now, ...)` builds a rich renderable: one row per meter (watts,
energy, today's kWh, a sparkline of recent power, last seen, online/offline)
and a line of counters. `text(renderable, width, colour)` renders it to a
string for non-terminals and for tests; on a terminal rich.live.Live shows it.
"""

import io
import time

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"
STALE_S = 60


def sparkline(values, width=24):
    """Values as `width` block characters (bucket means), scaled to their own min..max."""
    vals = [v for v in values if v is not None]
    if len(vals) > width:
        n = len(vals)
        vals = [sum(vals[i * n // width:(i + 1) * n // width]) / ((i + 1) * n // width - i * n // width)
                for i in range(width)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-9:
        return BARS[0 if hi <= 0 else 3] * len(vals)
    return "".join(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * len(BARS)))] for v in vals)


def _age(seconds):
    if seconds is None:
        return "-"
    if seconds < 90:
        return "%d s ago" % seconds
    if seconds < 5400:
        return "%d min ago" % (seconds // 60)
    return "%.1f h ago" % (seconds / 3600)


def _state(status, age):
    if status == "offline":
        return Text("offline", style="bold red")
    if age is not None and age > STALE_S:
        return Text("stale", style="yellow")
    if status == "online":
        return Text("online", style="green")
    return Text("?" if age is None else "sending", style="cyan")


def meters_table(meters, now=None, title=None, spark_width=24):
    now = time.time() if now is None else now
    t = Table(title=title, box=box.SIMPLE_HEAVY, expand=False, title_justify="left")
    t.add_column("host", style="bold")
    t.add_column("series")
    t.add_column("watts", justify="right", style="bold yellow")
    t.add_column("energy kWh", justify="right")
    t.add_column("today kWh", justify="right", style="magenta")
    t.add_column("recent power", style="yellow", no_wrap=True)
    t.add_column("last seen", justify="right")
    t.add_column("status")
    t.add_column("msgs", justify="right")
    rows = meters.rows()
    for m, status in rows:
        age = None if m.last_seen is None else max(0.0, now - m.last_seen)
        t.add_row(m.host, m.series,
                  "-" if m.watts is None else "%.1f" % m.watts,
                  "-" if m.energy is None else "%.3f" % m.energy,
                  "-" if m.today_kwh is None else "%.3f" % m.today_kwh,
                  sparkline([w for _, w in m.history], spark_width),
                  _age(age), _state(status, age), str(m.count))
    for host, status in meters.hosts_without_readings():
        t.add_row(host, "", "-", "-", "-", "", "-", _state(status, None), "0")
    if not rows and not meters.hosts_without_readings():
        t.add_row("(no meter seen yet)", "", "", "", "", "", "", "", "")
    return t


def view(meters, now=None, title=None, lines=()):
    footer = "messages %d, ignored %d" % (meters.messages, meters.garbage)
    if meters.garbage:
        footer += " (last: %s)" % meters.last_garbage[:80]
    parts = [meters_table(meters, now, title)]
    parts += [Text(line) for line in lines]
    parts.append(Text(footer, style="dim"))
    return Group(*parts)


def text(renderable, width=110, colour=False):
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=colour, color_system="standard" if colour else None,
                      no_color=not colour, highlight=False)
    console.print(renderable)
    return buf.getvalue()
