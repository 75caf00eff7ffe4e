"""The connection, as one state machine: Wi-Fi, clock, broker, publishing.

    WIFI    joining Wi-Fi (bounded by WIFI_TIMEOUT_S)
    CLOCK   asking NTP for the time (at boot and every NTP_INTERVAL_S)
    BROKER  connecting to the MQTT broker, last will on the availability topic:
            one step each for DNS (unless cached), CONNECT, one queued
            reading (once the hooks have run this boot), the retained
            'online', and each connect hook (energy floor, HA discovery)
    ONLINE  publishing queued readings, oldest first, QoS 1
    OFFLINE waiting out a backoff (1 s doubling to 60 s) after a failure

It is the one place that catches network errors and decides to reconnect.
It never waits for long: each call does at most one blocking operation, each
bounded by the board's deadline (board.STEP_MS, shorter than the watchdog),
or a burst of publishes capped at BURST_MS with the watchdog fed between
them, so the loop keeps reading pulses and closing report windows during any
outage and a slow or stalled broker never starves the watchdog. A reading
leaves the queue only once the broker has acknowledged it (PUBACK).
Names (broker, NTP server) are resolved once per Wi-Fi join (board.resolve).
Readings are published only once the clock is synced, stamped with the time
they were measured.
"""

import message

BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 60000
BURST_MS = 1000
QUICK_MS = 100  # a DNS answer this fast (the board's cache) is no blocking step

WIFI_REASONS = {
    -1: "connection failed",
    -2: "no access point with that SSID",
    -3: "wrong password",
}


class Link:
    def __init__(self, board, settings, mono_ms, wall, outbox, channels, log):
        self.board = board
        self.mono_ms = mono_ms
        self.s = settings
        self.wall = wall
        self.outbox = outbox
        self.channels = channels
        self.log = log
        self.state = "WIFI"
        self.client = None
        self.published = 0
        self.failures = 0
        # callables(client, feed), one step each after a broker connect (feed
        # between publishes); a hook that returns True has more to send and is
        # called again on the next step, so the loop keeps closing windows.
        self.on_connect = []
        self.on_online = []  # callables(client), run on each ONLINE pass after the readings
        self._joining = False
        self._phase = 0  # the step reached within CLOCK, BROKER, or a resync while ONLINE
        self._hooked = False  # the connect hooks have all run once this boot
        self._since = 0
        self._retry_at = 0
        self._next_ntp = 0
        self._last_tx = 0
        self._client_id = settings["mqtt_client_id"] or "picopower-" + board.unique_id()

    def _go(self, state):
        if state != self.state:
            self.log("link: %s -> %s" % (self.state, state))
            self.state = state
            self._phase = 0

    def _fail(self, now, what, err):
        delay = BACKOFF_MIN_MS << min(self.failures, 6)
        if delay > BACKOFF_MAX_MS:
            delay = BACKOFF_MAX_MS
        self.failures += 1
        self.log("%s: %s; retrying in %d s (%d readings queued)" % (what, err, delay // 1000, self.outbox.size))
        self._drop_client()
        self._retry_at = now + delay
        self._go("OFFLINE")

    def _drop_client(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def step(self, now, feed):
        """Advance by at most one blocking operation; `now` is monotonic ms."""
        st = self.state
        if st == "OFFLINE":
            if now >= self._retry_at:
                self._go("WIFI" if self.board.wifi_status() != 3 else self._after_wifi(now))
            return
        if st == "WIFI":
            self._wifi(now)
        elif st == "CLOCK":
            self._clock(now)
        elif st == "BROKER":
            self._broker(now, feed)
        elif st == "ONLINE":
            self._online(now, feed)

    def _after_wifi(self, now):
        if not self.wall.synced or now >= self._next_ntp:
            return "CLOCK"
        return "BROKER"

    def _wifi(self, now):
        status = self.board.wifi_status()
        if status == 3:
            self._joining = False
            self._go(self._after_wifi(now))
            return
        if not self._joining:
            self.board.wifi_start(self.s["wifi_ssid"], self.s["wifi_pass"])
            self._joining = True
            self._since = now
            return
        if status < 0 or now - self._since > self.s["wifi_timeout_s"] * 1000:
            self._joining = False
            self.board.wifi_stop()
            reason = WIFI_REASONS.get(status, "no connection after %d s (status %d)" % (self.s["wifi_timeout_s"], status))
            self._fail(now, "wifi '%s'" % self.s["wifi_ssid"], reason)

    def _sync(self, now):
        unix_ms = self.board.ntp_unix_ms(self.s["ntp_host"])
        self.wall.set(unix_ms, self.mono_ms())
        self._next_ntp = now + self.s["ntp_interval_s"] * 1000

    def _clock(self, now):
        try:
            if self._phase == 0 and self._resolve(self.s["ntp_host"]):
                self._phase = 1
                return
            self._sync(now)
        except (OSError, ValueError) as e:
            if self.wall.synced:
                # Keep the old offset; the monotonic clock drifts slowly.
                self.log("clock: resync failed (%s); keeping the old time" % e)
                self._next_ntp = now + BACKOFF_MAX_MS
            else:
                self._fail(now, "clock from %s" % self.s["ntp_host"], e)
                return
        else:
            self.log("clock: synced, unix %d" % self.wall.unix_s(self.mono_ms()))
        self._go("BROKER")

    def _broker(self, now, feed):
        phase = self._phase
        try:
            if phase == 0:
                if self._resolve(self.s["mqtt_server"]):
                    self._phase = 1
                    return
                phase = 1
            if phase == 1:
                self.client = self.board.mqtt_client(self.s, self._client_id, self.s["availability_topic"])
                self.client.feed = feed  # board.py feeds after every bounded step, whoever calls it
                self.client.connect()
                self._last_tx = now
            elif phase == 2:
                # One reading before anything else, so a broker that drops the
                # connection after every publish still drains the queue. Not
                # before the hooks have run once this boot: one of them reads
                # the energy floor back, which may raise the queued totals.
                if self._hooked and self.outbox.size:
                    self._publish_oldest(now, [ch.total() for ch in self.channels])
            elif phase == 3:
                self.client.publish(self.s["availability_topic"], b"online", True, 1)
            elif phase - 4 < len(self.on_connect):
                if self.on_connect[phase - 4](self.client, feed) is True:
                    return  # the same hook again next step
            else:
                self._hooked = True
                self.failures = 0
                self._go("ONLINE")
                return
        except (OSError, MemoryError) as e:
            # MemoryError: a TLS handshake may not find its buffers on the heap;
            # dropping the client frees them, and the backoff retries.
            self._fail(now, "broker %s:%d" % (self.s["mqtt_server"], self.s["mqtt_port"]), e)
            return
        self._phase = phase + 1

    def _resolve(self, host):
        """DNS for `host` (board.resolve: once per Wi-Fi join). True when it
        took long enough that the watchdog should be fed before the next
        blocking step; a cached answer is not worth a loop pass."""
        start = self.mono_ms()
        self.board.resolve(host)
        return self.mono_ms() - start > QUICK_MS

    def _publish_oldest(self, now, totals):
        """Publish the oldest queued reading; it leaves the queue once acknowledged."""
        idx, t, watts, pulses, kind = self.outbox.peek(now, totals)
        ch = self.channels[idx]
        payload = message.reading(watts, self.wall.unix_s(t), ch.series, self.s["hostname"], pulses, ch.imp)
        # Revisions (kind 1) never go on the live topic: Home Assistant reads it as "now".
        topic = self.s["revision_topic"] if kind else self.s["mqtt_topic"]
        if topic:
            self.client.publish(topic, payload, False, 1)
        self.outbox.pop()
        self.published += 1
        if self.published == 1:
            self.log("publish: first reading on '%s'" % self.s["mqtt_topic"])
        self._last_tx = now
        self.failures = 0

    def _online(self, now, feed):
        if self.board.wifi_status() != 3:
            self._drop_client()
            self.log("wifi: lost")
            self._go("WIFI")
            return
        if now >= self._next_ntp:
            # Resync in place (the broker connection stays up): DNS, then NTP,
            # each a step of its own.
            try:
                if self._phase == 0 and self._resolve(self.s["ntp_host"]):
                    self._phase = 1
                    return
                self._phase = 0
                self._sync(now)
            except (OSError, ValueError) as e:
                self._phase = 0
                self.log("clock: resync failed (%s); keeping the old time" % e)
                self._next_ntp = now + BACKOFF_MAX_MS
            return
        try:
            start = self.mono_ms()
            totals = [ch.total() for ch in self.channels]
            while self.outbox.size and self.mono_ms() - start < BURST_MS:
                self._publish_oldest(now, totals)
                feed()
            for hook in self.on_online:
                hook(self.client)
                feed()  # each publish (and the ping below) gets a whole watchdog period
            if now - self._last_tx >= self.s["mqtt_keepalive"] * 500:
                self.client.ping()
                self._last_tx = now
        except (OSError, MemoryError) as e:
            self._fail(now, "publish to %s" % self.s["mqtt_server"], e)
