"""The Pico W itself: the one module that touches hardware and the network.

Everything else in lib/ is plain MicroPython that also runs on CPython, so
the host's virtual Pico (picopower.virtual) replaces just this module. Its
interface, which the virtual board implements too:

    ticks_us() ticks_ms() sleep_ms(ms) log(text) unique_id() reset()
    data_path(name)                 -> file path on flash
    pulse_input(pin, pull, edge, both_edges, handler)
    wifi_start(ssid, password)      (does not wait)
    wifi_status()                   -> WLAN status code, 3 = got IP
    wifi_stop()
    ntp_unix_ms(host)               -> unix ms, raises OSError
    mqtt_client(settings, client_id, will_topic)
                                    -> object with connect() publish() ping() close()
    led(on)
    watchdog(ms)                    -> object with feed()

Every blocking network call here is bounded by SOCKET_TIMEOUT_S, shorter
than the watchdog, so a silent broker cannot hang the board.
"""

import time

import machine
import network
import ntptime

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

SOCKET_TIMEOUT_S = const(5)
_PM_PERFORMANCE = const(0xA11140)  # CYW43 power saving off: a responsive link

_wlan = None
_led = None
_pins = []


def ticks_us():
    return time.ticks_us()


def ticks_ms():
    return time.ticks_ms()


def sleep_ms(ms):
    time.sleep_ms(ms)


def log(text):
    print("%d %s" % (time.ticks_ms() // 1000, text))


def unique_id():
    import binascii
    return binascii.hexlify(machine.unique_id()).decode()


def reset():
    machine.reset()


def data_path(name):
    return name


def pulse_input(pin, pull, edge, both_edges, handler):
    pulls = {"up": machine.Pin.PULL_UP, "down": machine.Pin.PULL_DOWN, "none": None}
    p = machine.Pin(pin, machine.Pin.IN, pulls[pull])
    if both_edges:
        trigger = machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING
    elif edge == "falling":
        trigger = machine.Pin.IRQ_FALLING
    else:
        trigger = machine.Pin.IRQ_RISING
    p.irq(handler=handler, trigger=trigger, hard=True)
    _pins.append(p)
    return p


def wifi_start(ssid, password):
    global _wlan
    if _wlan is None:
        _wlan = network.WLAN(network.STA_IF)
    _wlan.active(True)
    try:
        _wlan.config(pm=_PM_PERFORMANCE)
    except (ValueError, OSError):
        pass
    _wlan.connect(ssid, password)


def wifi_status():
    if _wlan is None:
        return 0
    if _wlan.isconnected():
        return 3
    return _wlan.status()


def wifi_stop():
    if _wlan is not None:
        try:
            _wlan.disconnect()
        except OSError:
            pass


def ntp_unix_ms(host):
    ntptime.host = host
    ntptime.timeout = 2
    # ntptime.time() is whole seconds since 1970 on the rp2 port.
    t = ntptime.time()
    # Set the RTC too: mbedTLS checks certificate dates against it, and at its
    # 2021-01-01 power-on value every CA-verified connect would fail.
    tm = time.gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
    return t * 1000


class _TimedSockets:
    """Stands in for the socket module inside umqtt.simple so that every
    socket it makes (connect included) has a timeout."""

    def __init__(self, module):
        self._m = module
        self.getaddrinfo = module.getaddrinfo

    def socket(self, *args):
        s = self._m.socket(*args)
        s.settimeout(SOCKET_TIMEOUT_S)
        return s


class _PinnedContext:
    """The SSLContext umqtt.simple gets when MQTT_CERT_SHA256 is set: after the
    handshake and before CONNECT (which carries the password) the server
    certificate's SHA-256 must equal the pin."""

    def __init__(self, ctx, pin):
        self._ctx = ctx
        self._pin = pin.lower().replace(":", "")

    def wrap_socket(self, sock, server_hostname=None):
        import binascii
        import hashlib
        s = self._ctx.wrap_socket(sock, server_hostname=server_hostname)
        der = s.getpeercert(True) if hasattr(s, "getpeercert") else None
        if der is None or binascii.hexlify(hashlib.sha256(der).digest()).decode() != self._pin:
            s.close()
            raise OSError("mqtt: the broker's certificate does not match MQTT_CERT_SHA256")
        return s


class _Mqtt:
    """umqtt.simple with timeouts, errors as OSError, and a fresh packet id."""

    def __init__(self, settings, client_id, will_topic):
        import socket
        from umqtt import simple
        simple.socket = _TimedSockets(socket)
        ssl_ctx = None
        if settings["mqtt_tls"]:
            import ssl
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if settings["mqtt_ca_file"]:
                ssl_ctx.verify_mode = ssl.CERT_REQUIRED
                try:
                    ssl_ctx.load_verify_locations(cafile=settings["mqtt_ca_file"])
                except ValueError as e:  # "invalid cert": the link catches OSError only
                    raise OSError("mqtt: MQTT_CA_FILE %s is not a certificate (%s)" % (settings["mqtt_ca_file"], e))
            else:
                ssl_ctx.verify_mode = ssl.CERT_NONE
            if settings.get("mqtt_cert_sha256"):
                ssl_ctx = _PinnedContext(ssl_ctx, settings["mqtt_cert_sha256"])
        # umqtt.simple sizes every field with len(): give it bytes, not characters.
        self.c = simple.MQTTClient(
            client_id.encode(), settings["mqtt_server"], settings["mqtt_port"],
            user=settings["mqtt_user"].encode() or None, password=settings["mqtt_pass"].encode() or None,
            keepalive=settings["mqtt_keepalive"], ssl=ssl_ctx)
        self.c.set_last_will(will_topic.encode(), b"offline", retain=True, qos=1)

    def _guard(self, fn, *args):
        try:
            if self.c.sock is not None:
                # wait_msg() leaves the socket blocking; put the timeout back.
                self.c.sock.settimeout(SOCKET_TIMEOUT_S)
            return fn(*args)
        except OSError:
            raise
        except Exception as e:  # umqtt reports protocol trouble with assert
            raise OSError("mqtt: %r" % (e,))

    def connect(self):
        return self._guard(self.c.connect, True)

    def publish(self, topic, payload, retain=False, qos=1):
        if self.c.pid >= 65000:
            # umqtt.simple never wraps its packet id; reconnect before it does.
            raise OSError("mqtt: packet ids used up, reconnecting")
        if isinstance(topic, str):
            topic = topic.encode()
        if isinstance(payload, str):
            payload = payload.encode()
        self._guard(self.c.publish, topic, payload, retain, qos)

    def ping(self):
        self._guard(self.c.ping)
        # Drain a PINGRESP without blocking, so replies do not pile up.
        self.c.sock.setblocking(False)
        try:
            self.c.check_msg()
        except OSError:
            pass
        except Exception:
            pass

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        try:
            self.c.sock.close()
        except Exception:
            pass


def mqtt_client(settings, client_id, will_topic):
    return _Mqtt(settings, client_id, will_topic)


def led(on):
    global _led
    if _led is None:
        _led = machine.Pin("LED", machine.Pin.OUT)
    _led.value(1 if on else 0)


class _NoWatchdog:
    def feed(self):
        pass


def watchdog(ms):
    if not ms:
        return _NoWatchdog()
    return machine.WDT(timeout=ms)
