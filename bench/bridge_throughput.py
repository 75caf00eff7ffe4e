"""Sustained messages/s from Mosquitto into InfluxDB through the bridge, next to the ceiling.

    python3 bench/bridge_throughput.py [--messages 20000] [--meters 100]

Starts a private Mosquitto 2.0 and InfluxDB 1.6 (loopback, temp dirs). Two
persistent QoS 1 sessions subscribe to the topic and go offline: a plain
paho-mqtt subscriber that only counts (the ceiling) and the bridge. N
seed-format messages from the firmware's message.reading() (M hosts) are then
published and queued by the broker for both. Each consumer is started in turn
and timed until it has received (plain) or written to InfluxDB (bridge) all N;
the same run prints both rates and their ratio, and checks InfluxDB holds N
points.
"""

import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import paho.mqtt.client as mqtt  # noqa: E402

from tests import servers  # noqa: E402
from picopower.bridge import Bridge  # noqa: E402
from picopower.sinks import InfluxSink  # noqa: E402

from picopower.firmware import message  # noqa: E402

TOPIC = "bench/power"


class Counter:
    def __init__(self, url_port, n):
        self.n = n
        self.count = 0
        self.done = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-plain", clean_session=False)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
        self.c.on_message = self._on_message
        self.port = url_port

    def _on_message(self, c, u, msg):
        self.count += 1
        if self.count >= self.n:
            self.done.set()

    def run(self, timeout):
        self.c.connect("127.0.0.1", self.port)
        self.c.loop_start()
        ok = self.done.wait(timeout)
        self.c.disconnect()
        self.c.loop_stop()
        return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--meters", type=int, default=100)
    args = ap.parse_args()
    n = args.messages
    t0 = int(time.time()) - n // args.meters * 10 - 60
    payloads = [message.reading(100.0 + (k % 997) * 0.5, t0 + (k // args.meters) * 10, "power",
                                "meter-%04d" % (k % args.meters), 1000 + k, 1000) for k in range(n)]
    with servers.Mosquitto() as broker, servers.InfluxDB() as influx, tempfile.TemporaryDirectory() as tmp:
        influx.create_database("bench")
        # register both persistent sessions, then take them offline
        plain = Counter(broker.port, n)
        plain.c.connect("127.0.0.1", broker.port)
        plain.c.loop_start()
        servers.wait_until(plain.c.is_connected)
        time.sleep(0.2)
        plain.c.disconnect()
        plain.c.loop_stop()
        b = Bridge(broker.url, [TOPIC], InfluxSink(influx.url, "bench"), spool_dir=os.path.join(tmp, "spool"),
                   client_id="bench-bridge", reject_log_per_s=0)
        b.start()
        b.stop()

        tp = time.monotonic()
        servers.publish(broker.url, TOPIC, payloads, timeout=300)
        pub_s = time.monotonic() - tp

        ts = time.monotonic()
        if not plain.run(300):
            sys.exit("plain subscriber got only %d of %d" % (plain.count, n))
        plain_s = time.monotonic() - ts

        b = Bridge(broker.url, [TOPIC], InfluxSink(influx.url, "bench"), spool_dir=os.path.join(tmp, "spool"),
                   client_id="bench-bridge", reject_log_per_s=0)
        ts = time.monotonic()
        b.start()
        servers.wait_until(lambda: b.counters()["written"] >= n, timeout=300, interval=0.005,
                           what="bridge writes")
        bridge_s = time.monotonic() - ts
        c = b.counters()
        b.stop()
        stored = influx.points('SELECT count("power") FROM "power"', "bench")[0]["count"]

    plain_rate = n / plain_s
    bridge_rate = n / bridge_s
    print("messages: %d from %d meters (seed JSON, %d bytes each), published in %.2f s (%.0f msg/s)"
          % (n, args.meters, len(payloads[0]), pub_s, n / pub_s))
    print("plain paho subscriber (count only, QoS 1): %8.0f msg/s  (%.2f s)" % (plain_rate, plain_s))
    print("bridge -> InfluxDB 1.6 (validate, write, ack): %8.0f msg/s  (%.2f s)" % (bridge_rate, bridge_s))
    print("ratio bridge / plain: %.2f   (aim >= 0.5)" % (bridge_rate / plain_rate))
    print("points in InfluxDB: %d of %d; bridge counters: received=%d written=%d rejected=%d spooled=%d"
          % (stored, n, c["received"], c["written"], c["rejected"], c["spooled"]))


if __name__ == "__main__":
    main()
