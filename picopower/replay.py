"""`picopower replay`: the firmware's own code over a log of pulse times.

Reads one unix time (seconds, float) per line, fires each as an LED pulse
into a virtual Pico whose clock starts NTP-synced at the first pulse, and
yields the JSON messages the board would publish on its data topic, in
order, stamped on the file's clock. With `revisions` it also yields the
revisions the board publishes on its revision topic (board/lib/revisions.py),
interleaved in the order the board publishes them: for each timestamp the
first message is the live reading and the last one the value that is stored;
the board then runs on past the log (no live readings printed) until its
revision horizon has settled every window it printed.
"""

import math
import re
import tempfile

from picopower.errors import UserError
from picopower.firmware import clock, revisions as revision_rules
from picopower.virtual import PulseSource, RecordingClient, VirtualBoard, make_app, run_until, settings_for

# The board trusts a first clock answer only inside [2024, 2036-02-07) (its
# junk-NTP guard), while a pulse log may be older or count from 0. The virtual
# board then runs shifted by whole seconds into that range and the stamps are
# shifted back: report windows follow the first pulse, power and energy do not
# depend on the epoch, so nothing else changes.
_SHIFTED_START_S = 1735689600  # 2025-01-01
_STAMP = re.compile(r'"timestamp": (\d+)')


def _epoch_shift(start):
    if clock.EARLIEST_UNIX_S <= start < clock.NTP_WRAP_UNIX_S:
        return 0
    return _SHIFTED_START_S - int(start)


def _unshift(payload, shift):
    if not shift:
        return payload
    return _STAMP.sub(lambda m: '"timestamp": %d' % (int(m.group(1)) - shift), payload, count=1)


class PulseFileError(UserError, ValueError):
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


def replay(times, imp_per_kwh=1000, interval_s=10, max_power_w=24000, extra=None, step_ms=1000,
           revisions=False):
    """Yield each data message (a JSON string) the board publishes, in order;
    with `revisions` its revisions too."""
    values = {"IMP_PER_KWH": imp_per_kwh, "REPORT_INTERVAL_S": interval_s,
              "MAX_POWER_W": max_power_w, "MQTT_TOPIC": "replay"}
    values.update(extra or {})
    settings = settings_for(values)
    topics = {settings["mqtt_topic"]}
    if revisions and settings["revision_topic"]:
        topics.add(settings["revision_topic"])
    start = times[0]
    shift = _epoch_shift(start)
    start_us = [int(round((t - start) * 1e6)) for t in times]
    out = []
    live = [True]  # False once the log is over: only revisions are still wanted

    def sink(topic, payload, retain):
        if topic in topics and (live[0] or topic != settings["mqtt_topic"]):
            out.append(payload)

    interval_us = settings["report_interval_s"] * 1000000
    with tempfile.TemporaryDirectory(prefix="picopower-replay-") as data:
        board = VirtualBoard([PulseSource(start_us)], lambda cid, will: RecordingClient(sink), data, start + shift)
        app = make_app(board, settings)
        end = start_us[-1] + interval_us
        # With revisions, run on past the log until the board has settled every
        # window it printed (its horizon), printing only revisions meanwhile.
        settle = end + (revision_rules.HORIZON_S * 1000000 + interval_us if len(topics) > 1 else 0)
        while board.us < settle or app.outbox.size:
            run_until(app, board, board.us + interval_us, step_ms)
            for payload in out:
                yield _unshift(payload, shift)
            del out[:]
            if board.us >= end:
                live[0] = False
            if board.us > settle + 600 * 1000000:
                break
