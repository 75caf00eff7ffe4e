"""The board's health as a retained message, and the energy floor kept at the broker.

Status: JSON of numbers (and "host") on STATUS_TOPIC (default
"<MQTT_TOPIC>/status"), retained, at each connect and every STATUS_EVERY_MS:

    uptime_s reset_cause (0 power-on, 1 watchdog, 2 soft reset or
    machine.reset()) resets (since power-on) heap_free rssi
    queued (RAM and flash) dropped (queue overflow, and readings lost in RAM
    at a reset) spilled (readings written to flash this boot) unstamped
    (readings of a boot that reset before its clock synced) rejected (pulses
    refused as ghosts, all channels) energy_damaged (energy files found damaged)

It has no "timestamp" on purpose, so Telegraf drops it if it ever sees it.
A flickering sensor (rejected climbing) or a reset loop (resets climbing,
uptime_s small) shows in Home Assistant, not only on a REPL.

Energy floor: after a power cut the flash total can be up to one persist
interval behind what was already published, and Home Assistant reads a lower
total as a meter running backwards. After each burst of readings the board
publishes, retained, each channel's newest published time and pulse total on
"<STATUS_TOPIC>/<HOSTNAME>/energy" (lines "channel unix_s pulses imp"); at
connect it reads that back, raises its totals to it and skips flash readings
already published (spill.Durable.floor). The published total never goes down.
"""

import json

STATUS_EVERY_MS = 60000


def status_topic(settings):
    return settings.get("status_topic") or settings["mqtt_topic"] + "/status"


def floor_topic(settings):
    return "%s/%s/energy" % (status_topic(settings), settings["hostname"])


def encode_floor(floor, imps):
    lines = []
    for ch in sorted(floor):
        ts, pulses = floor[ch]
        lines.append("%d %d %d %d" % (ch, ts, pulses, imps[ch]))
    return "\n".join(lines)


def decode_floor(text, imps):
    """{channel: (unix s, pulses at today's meter constant)}; bad lines skipped."""
    out = {}
    for line in text.split("\n"):
        parts = line.split()
        if len(parts) != 4:
            continue
        try:
            ch, ts, pulses, imp = [int(p) for p in parts]
        except ValueError:
            continue
        if ch < 0 or ch >= len(imps) or pulses < 0 or imp <= 0:
            continue
        if imp != imps[ch]:
            pulses = (pulses * imps[ch] + imp // 2) // imp
        out[ch] = (ts, pulses)
    return out


class Health:
    def __init__(self, app, boot):
        self.app = app
        self.boot = boot
        self.s = app.s
        self.topic = status_topic(app.s)
        self.floor_topic = floor_topic(app.s)
        self._next_ms = 0
        self._floored = False

    def status(self):
        app = self.app
        box = app.outbox
        board = app.board
        return json.dumps({
            "host": self.s["hostname"],
            "uptime_s": app.mono.now_ms() // 1000,
            "reset_cause": self.boot.cause,
            "resets": self.boot.resets,
            "heap_free": board.heap_free(),
            "rssi": board.wifi_rssi(),
            "queued": box.size,
            "dropped": box.dropped + self.boot.lost,
            "spilled": box.spilled,
            "unstamped": self.boot.unstamped,
            "rejected": sum([ch.capture.rejected_total() for ch in app.channels]),
            "energy_damaged": sum([ch.store.damaged for ch in app.channels]),
        })

    def connected(self, client, feed=None):
        """At each broker connect: read the floor back (first connect of a boot
        only: later the floor is this boot's own, already in the total), publish
        the status."""
        payload = None if self._floored else self.app.board.mqtt_retained(client, self.floor_topic)
        self._floored = True
        if payload:
            try:
                text = bytes(payload).decode()
            except UnicodeError:
                text = ""
            self.app.raise_floor(decode_floor(text, [ch.imp for ch in self.app.channels]))
        if feed is not None:
            feed()
        self._next_ms = 0

    def publish(self, client):
        """After each ONLINE pass: the floor if it moved, the status when due."""
        box = self.app.outbox
        if box.floor_changed:
            client.publish(self.floor_topic, encode_floor(box.floor, [ch.imp for ch in self.app.channels]), True, 1)
            box.floor_changed = False
        now = self.app.mono.now_ms()
        if now >= self._next_ms:
            client.publish(self.topic, self.status(), True, 1)
            self._next_ms = now + STATUS_EVERY_MS
