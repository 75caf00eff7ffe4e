"""Makes the README's pictures from real runs of the project's commands.

    python docs/make_screenshots.py

docs/demo.png: `picopower demo` runs live in a tmux pane; after --at seconds
the pane is captured with its colours (tmux capture-pane -e) and the text is
drawn with PIL in a monospace font, character cell by character cell.
docs/plot.png: `picopower demo --no-live` runs a whole virtual day, then
`picopower plot --live` draws its SQLite file (stored, revised power; the
bottom right compares it with what was published live at standby).
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
PALETTE = ["#1e1e1e", "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2", "#dcdfe4"]
BRIGHT = ["#5c6370", "#ff7b86", "#b5e890", "#ffd68a", "#8cc8ff", "#e09bf5", "#7fd8e3", "#ffffff"]
BG, FG = "#16181d", "#d7dae0"
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _xterm256(n):
    if n < 8:
        return PALETTE[n]
    if n < 16:
        return BRIGHT[n - 8]
    if n < 232:
        n -= 16
        r, g, b = n // 36, (n // 6) % 6, n % 6
        return "#%02x%02x%02x" % tuple(0 if v == 0 else 55 + 40 * v for v in (r, g, b))
    v = 8 + 10 * (n - 232)
    return "#%02x%02x%02x" % (v, v, v)


def parse(line):
    """[(char, fg, bold, dim)] for one captured line with SGR colour codes."""
    out = []
    fg, bold, dim = None, False, False
    pos = 0
    for m in SGR.finditer(line):
        out += [(c, fg, bold, dim) for c in line[pos:m.start()]]
        pos = m.end()
        codes = [int(c) if c else 0 for c in m.group(1).split(";")]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                fg, bold, dim = None, False, False
            elif c == 1:
                bold = True
            elif c == 2:
                dim = True
            elif c == 22:
                bold = dim = False
            elif 30 <= c <= 37:
                fg = PALETTE[c - 30]
            elif 90 <= c <= 97:
                fg = BRIGHT[c - 90]
            elif c == 39:
                fg = None
            elif c == 38 and i + 2 < len(codes) and codes[i + 1] == 5:
                fg = _xterm256(codes[i + 2])
                i += 2
            elif c == 38 and i + 4 < len(codes) and codes[i + 1] == 2:
                fg = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                i += 4
            i += 1
    out += [(c, fg, bold, dim) for c in line[pos:]]
    return out


def render(text, path, font_size=15):
    import matplotlib
    fonts = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")
    regular = ImageFont.truetype(os.path.join(fonts, "DejaVuSansMono.ttf"), font_size)
    boldf = ImageFont.truetype(os.path.join(fonts, "DejaVuSansMono-Bold.ttf"), font_size)
    lines = text.rstrip("\n").split("\n")
    while lines and not SGR.sub("", lines[-1]).strip():
        lines.pop()
    cells = [parse(ln) for ln in lines]
    cw = int(round(regular.getlength("M")))
    ch = int(font_size * 1.35)
    cols = max(len(c) for c in cells)
    pad = 16
    img = Image.new("RGB", (cols * cw + 2 * pad, len(cells) * ch + 2 * pad + 24), BG)
    d = ImageDraw.Draw(img)
    for k, colour in enumerate(("#ff5f56", "#ffbd2e", "#27c93f")):  # a terminal window's title bar
        d.ellipse((pad + k * 20, 8, pad + k * 20 + 12, 20), fill=colour)
    for y, row in enumerate(cells):
        for x, (c, fg, bold, dim) in enumerate(row):
            if c == " ":
                continue
            colour = fg or FG
            if dim:
                colour = "#7f848e"
            d.text((pad + x * cw, pad + 24 + y * ch), c, font=boldf if bold else regular, fill=colour)
    img.save(path)


def demo_shot(out, at, width, height, meters, speed):
    tmp = tempfile.mkdtemp(prefix="picopower-shot-")
    session = "picopower-shot-%d" % os.getpid()
    cmd = "cd %s && %s -m picopower demo --meters %d --speed %g; sleep 60" % (
        shlex.quote(tmp), shlex.quote(sys.executable), meters, speed)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height),
                    "env", "TERM=xterm-256color", "COLORTERM=truecolor", "PYTHONPATH=" + env["PYTHONPATH"], "sh", "-c", cmd], check=True)
    try:
        time.sleep(at)
        text = subprocess.run(["tmux", "capture-pane", "-p", "-e", "-t", session], check=True,
                              capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session])
    render(text, out)
    return text


def plot_shot(out, meters, hours):
    tmp = tempfile.mkdtemp(prefix="picopower-plot-")
    db = os.path.join(tmp, "day.sqlite")
    subprocess.run([sys.executable, "-m", "picopower", "demo", "--no-live", "--meters", str(meters),
                    "--speed", "100000", "--hours", str(hours), "--db", db, "--out", os.path.join(tmp, "d.png")],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "picopower", "plot", "--sqlite", db, "--since", "all", "--live", "--out", out,
                    "--title", "Power consumption (picopower demo, %d virtual houses)" % meters], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--at", type=float, default=32, help="seconds into the live demo to capture")
    ap.add_argument("--only", choices=("demo", "plot"))
    a = ap.parse_args()
    if a.only in (None, "demo"):
        text = demo_shot(os.path.join(HERE, "demo.png"), a.at, 118, 18, 3, 1440)
        print(SGR.sub("", text))
    if a.only in (None, "plot"):
        plot_shot(os.path.join(HERE, "plot.png"), 3, 24)


if __name__ == "__main__":
    main()
