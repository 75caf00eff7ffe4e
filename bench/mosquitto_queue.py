"""RAM Mosquitto needs per reading queued for a stopped bridge (sizes `picopower config mosquitto`).

    python3 bench/mosquitto_queue.py --messages 50000

A private Mosquitto, a persistent QoS 1 session that subscribes and goes
away, then N seed-format readings published: the broker's resident memory
before and after, divided by N (configs.RAM_BYTES_PER_MESSAGE is this figure).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import paho.mqtt.client as mqtt  # noqa: E402

from picopower.firmware import message  # noqa: E402
from tests import servers  # noqa: E402


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS"):
                return int(ln.split()[1]) * 1024
    raise OSError("no VmRSS for pid %d" % pid)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50000)
    n = ap.parse_args().messages
    with servers.Mosquitto(extra_config="max_queued_messages %d" % (n + 1)) as broker:
        subscribed = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stopped-bridge", clean_session=False)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("home/power", 1)
        c.on_subscribe = lambda *a: subscribed.append(True)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        servers.wait_until(lambda: subscribed, what="SUBACK")
        c.disconnect()
        c.loop_stop()
        before = rss(broker.pid)
        start = int(time.time()) - 86400
        msgs = [message.reading(1234.5 + k % 100, start + k, "power", "pico-meter-%d" % (k % 50),
                                1234567 + k, 1000) for k in range(n)]
        servers.publish(broker.url, "home/power", msgs, timeout=600)
        after = rss(broker.pid)
    print("payload %d bytes; Mosquitto RSS %+.1f MB for %d queued readings: %.0f bytes each"
          % (len(msgs[0]), (after - before) / 1e6, n, (after - before) / n))


if __name__ == "__main__":
    main()
