"""`picopower replay`: the firmware's own code over a log of pulse times.

Reads one unix time (seconds, float) per line, fires each as an LED pulse
into a virtual Pico whose clock starts NTP-synced at the first pulse, and
yields the JSON messages the board would publish on its data topic, in
order, stamped on the file's clock.
"""

import math
import tempfile

from picopower.virtual import PulseSource, RecordingClient, VirtualBoard, make_app, settings_for


class PulseFileError(ValueError):
    pass


def read_pulse_times(lines, name="pulses"):
    times = []
    for n, line in enumerate(lines, 1):
        text = line.split("#")[0].strip()
        if not text:
            continue
        try:
            t = float(text)
        except ValueError:
            raise PulseFileError("%s:%d: not a unix time in seconds: %r" % (name, n, text[:40])) from None
        if not math.isfinite(t) or t < 0:
            raise PulseFileError("%s:%d: not a unix time in seconds: %r" % (name, n, text[:40]))
        if times and t < times[-1]:
            raise PulseFileError("%s:%d: time goes backwards (%s after %s)" % (name, n, text, times[-1]))
        times.append(t)
    if not times:
        raise PulseFileError("%s: no pulse times in the file" % name)
    return times


def replay(times, imp_per_kwh=1000, interval_s=10, max_power_w=24000, extra=None, step_ms=1000):
    """Yield each data message (a JSON string) the board publishes, in order."""
    values = {"IMP_PER_KWH": imp_per_kwh, "REPORT_INTERVAL_S": interval_s,
              "MAX_POWER_W": max_power_w, "MQTT_TOPIC": "replay"}
    values.update(extra or {})
    settings = settings_for(values)
    start = times[0]
    start_us = [int(round((t - start) * 1e6)) for t in times]
    out = []

    def sink(topic, payload, retain):
        if topic == settings["mqtt_topic"]:
            out.append(payload)

    with tempfile.TemporaryDirectory(prefix="picopower-replay-") as data:
        board = VirtualBoard([PulseSource(start_us)], lambda cid, will: RecordingClient(sink), data, start)
        app = make_app(board, settings)
        end = start_us[-1] + settings["report_interval_s"] * 1000000
        while board.us < end or app.outbox.size:
            app.step()
            board.advance(board.us + min(app.idle_ms(), step_ms) * 1000 + 1)
            while out:
                yield out.pop(0)
            if board.us > end + 600 * 1000000:
                break
