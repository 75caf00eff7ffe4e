"""The connection, as one state machine: Wi-Fi, clock, broker, publishing.

    WIFI    joining Wi-Fi (bounded by WIFI_TIMEOUT_S)
    CLOCK   asking NTP for the time (at boot and every NTP_INTERVAL_S)
    BROKER  connecting to the MQTT broker, last will on the availability topic
    ONLINE  publishing queued readings, oldest first, QoS 1
    OFFLINE waiting out a backoff (1 s doubling to 60 s) after a failure

It is the one place that catches network errors and decides to reconnect.
It never waits for long: each call does at most one blocking operation of at
most the socket timeout, or a burst of publishes capped at BURST_MS, so the
loop keeps reading pulses and closing report windows during any outage.
Readings are published only once the clock is synced, stamped with the time
they were measured.
"""

import message

BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 60000
BURST_MS = 1000

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
        self.on_connect = []  # callables(client), run after each broker connect
        self._joining = False
        self._since = 0
        self._retry_at = 0
        self._next_ntp = 0
        self._last_tx = 0
        self._client_id = settings["mqtt_client_id"] or "picopower-" + board.unique_id()

    def _go(self, state):
        if state != self.state:
            self.log("link: %s -> %s" % (self.state, state))
            self.state = state

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
            self._broker(now)
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

    def _broker(self, now):
        try:
            self.client = self.board.mqtt_client(self.s, self._client_id, self.s["availability_topic"])
            self.client.connect()
            self.client.publish(self.s["availability_topic"], b"online", True, 1)
            for hook in self.on_connect:
                hook(self.client)
        except OSError as e:
            self._fail(now, "broker %s:%d" % (self.s["mqtt_server"], self.s["mqtt_port"]), e)
            return
        self.failures = 0
        self._last_tx = now
        self._go("ONLINE")

    def _online(self, now, feed):
        if self.board.wifi_status() != 3:
            self._drop_client()
            self.log("wifi: lost")
            self._go("WIFI")
            return
        if now >= self._next_ntp:
            # Resync in place: the broker connection stays up.
            try:
                self._sync(now)
            except (OSError, ValueError) as e:
                self.log("clock: resync failed (%s); keeping the old time" % e)
                self._next_ntp = now + BACKOFF_MAX_MS
        try:
            start = self.mono_ms()
            totals = [ch.total() for ch in self.channels]
            while self.outbox.size and self.mono_ms() - start < BURST_MS:
                idx, t, watts, pulses = self.outbox.peek(now, totals)
                ch = self.channels[idx]
                payload = message.reading(watts, self.wall.unix_s(t), ch.series, self.s["hostname"], pulses, ch.imp)
                self.client.publish(self.s["mqtt_topic"], payload, False, 1)
                self.outbox.pop()
                self.published += 1
                if self.published == 1:
                    self.log("publish: first reading on '%s'" % self.s["mqtt_topic"])
                self._last_tx = now
                feed()
            if now - self._last_tx >= self.s["mqtt_keepalive"] * 500:
                self.client.ping()
                self._last_tx = now
        except OSError as e:
            self._fail(now, "publish to %s" % self.s["mqtt_server"], e)
