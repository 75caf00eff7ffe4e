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
    resolve(host)                   -> address; DNS once per Wi-Fi join, raises OSError
    ntp_unix_ms(host)               -> unix ms, raises OSError
    mqtt_client(settings, client_id, will_topic)
                                    -> object with connect() publish() ping() close()
    led(on)
    watchdog(ms)                    -> object with feed()
    scratch_read(i) scratch_write(i, v)   watchdog SCRATCH0-3 (kept through resets)
    reset_cause()                   -> 1 watchdog, 2 soft reset / machine.reset()
    heap_free() wifi_rssi()         -> bytes free, dBm (0 when not joined)
    mqtt_retained(client, topic)    -> the retained payload on topic, or None

Every blocking network step here ends within STEP_MS (NTP within
NTP_TIMEOUT_S), shorter than the watchdog, whatever the broker does: silent
after accepting TCP, stalled mid-PUBACK, or trickling bytes. The library's
own timeouts are not trusted (see _Bounded), and the watchdog is fed after
every step (_Mqtt.feed). DNS runs once per Wi-Fi join; lwIP bounds it, with
the watchdog fed meanwhile (see _dns).
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

# Every blocking network step (TCP connect, TLS handshake, CONNACK, a publish
# and its PUBACK, PINGRESP) ends within STEP_MS; with the rest of a loop pass
# that stays inside the 8 s watchdog, which the loop feeds between steps.
STEP_MS = const(5000)
NTP_TIMEOUT_S = const(2)
# lwIP ends a DNS query by itself, after about 7 s per DNS server (two at
# most): longer than the watchdog allows, so a timer feeds it meanwhile, for
# at most DNS_FED_MS.
DNS_FED_MS = const(16000)
_ETIMEDOUT = const(110)
_PM_PERFORMANCE = const(0xA11140)  # CYW43 power saving off: a responsive link

_wlan = None
_addr = {}  # host name -> address, kept across Wi-Fi joins as a fallback
_fresh = {}  # names resolved since the latest join
_led = None
_pins = []
_wdt = None


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
    _fresh.clear()  # a new network may have other DNS answers


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


def resolve(host):
    """The address of `host`: asked of DNS once per Wi-Fi join, then kept.

    umqtt.simple and ntptime call getaddrinfo on every connect; handed an
    address they skip DNS, so the link makes DNS a step of its own (_dns says
    how it is bounded). If DNS fails, the address from an earlier join is used."""
    if host in _fresh:
        return _addr[host]
    try:
        ip = _dns(host)
    except OSError:
        if host not in _addr:
            raise
        ip = _addr[host]
    _addr[host] = ip
    _fresh[host] = True
    return ip


def _dns(host):
    """getaddrinfo, with the watchdog fed by a timer meanwhile (DNS_FED_MS at most)."""
    import socket
    timer = None
    if _wdt is not None:
        end = time.ticks_add(time.ticks_ms(), DNS_FED_MS)

        def feed(t):
            if time.ticks_diff(end, time.ticks_ms()) > 0:
                _wdt.feed()
        try:
            # A soft timer: it runs while getaddrinfo waits for lwIP.
            timer = machine.Timer(mode=machine.Timer.PERIODIC, period=1000, callback=feed)
        except (AttributeError, ValueError, OSError):
            timer = None  # a port without timers: DNS must then fit the watchdog
    try:
        found = socket.getaddrinfo(host, 0)
    finally:
        if timer is not None:
            timer.deinit()
    if not found:
        raise OSError("dns: no address for %s" % host)
    addr = found[0][-1]
    if isinstance(addr, tuple):
        return addr[0]  # lwIP (rp2): ('192.168.1.10', 0)
    return "%d.%d.%d.%d" % (addr[4], addr[5], addr[6], addr[7])  # unix port: a raw sockaddr_in


def ntp_unix_ms(host):
    ntptime.host = _addr.get(host, host)
    ntptime.timeout = NTP_TIMEOUT_S
    try:
        # ntptime.time() is whole seconds since 1970 on the rp2 port.
        t = ntptime.time()
    except OSError:
        # A pool server may be gone for good: ask DNS again next time.
        _fresh.pop(host, None)
        raise
    # Set the RTC too: mbedTLS checks certificate dates against it, and at its
    # 2021-01-01 power-on value every CA-verified connect would fail.
    tm = time.gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
    return t * 1000


class _Deadline:
    """When the current network step must be over (ticks_ms); at most STEP_MS ahead."""

    def __init__(self):
        self.at = time.ticks_ms()

    def start(self):
        self.at = time.ticks_add(time.ticks_ms(), STEP_MS)

    def left_s(self):
        left = time.ticks_diff(self.at, time.ticks_ms())
        if left <= 0:
            raise OSError(_ETIMEDOUT)
        return left / 1000


class _Bounded:
    """The socket umqtt.simple talks through: every wait ends at the step's
    deadline, whatever umqtt does to the timeout. (Since 1.5 its connect()
    sets the timeout it is given, None by default, and wait_msg() makes the
    socket blocking after its first read: on its own, a broker that stalls
    mid-PUBACK would hold the board until the watchdog fires.)

    `stream` is what umqtt reads and writes (the TCP socket, or the TLS
    socket over it); `raw` is the TCP socket whose timeout bounds both."""

    def __init__(self, stream, raw, deadline):
        self.stream = stream
        self.raw = raw
        self._d = deadline
        self._poll = False

    def settimeout(self, t):
        pass  # the deadline rules

    def setblocking(self, flag):
        self._poll = not flag
        if self._poll:
            self.raw.setblocking(False)  # check_msg(): a read returns None when nothing came

    def _arm(self):
        self.raw.settimeout(self._d.left_s())

    def connect(self, addr):
        self._arm()
        self.raw.connect(addr)

    def write(self, buf, n=-1):
        if n >= 0:
            buf = memoryview(buf)[:n]
        if not self._poll:
            self._arm()
        return self.stream.write(buf)

    def read(self, n):
        if self._poll:
            return self.stream.read(n)
        out = b""
        while len(out) < n:
            self._arm()
            # Byte by byte (the board reads only small packets), each under the
            # time left, so a broker trickling bytes cannot stretch a read
            # past the deadline.
            b = self.stream.read(1 if n - len(out) <= 512 else n - len(out))
            if not b:
                break  # end of stream: umqtt sees it as b"" or a short read
            out += b
        return out

    def close(self):
        self.stream.close()


class _Sockets:
    """Stands in for the socket module inside umqtt.simple: its sockets are _Bounded."""

    def __init__(self, module, deadline):
        self._m = module
        self._d = deadline

    def socket(self, *args):
        raw = self._m.socket(*args)
        return _Bounded(raw, raw, self._d)

    def getaddrinfo(self, *args):
        return self._m.getaddrinfo(*args)


class _Tls:
    """The SSLContext umqtt.simple gets. The handshake runs under the step's
    deadline and is told the broker's name (umqtt only knows its address);
    with MQTT_CERT_SHA256 the certificate's SHA-256 must equal the pin before
    CONNECT, which carries the password, is sent."""

    def __init__(self, ctx, hostname, pin, deadline):
        self._ctx = ctx
        self._host = hostname
        self._pin = pin.lower().replace(":", "") if pin else ""
        self._d = deadline

    def wrap_socket(self, sock, server_hostname=None):
        raw = sock.raw
        raw.settimeout(self._d.left_s())
        s = self._ctx.wrap_socket(raw, server_hostname=self._host)
        if self._pin:
            import binascii
            import hashlib
            der = s.getpeercert(True) if hasattr(s, "getpeercert") else None
            if der is None or binascii.hexlify(hashlib.sha256(der).digest()).decode() != self._pin:
                s.close()
                raise OSError("mqtt: the broker's certificate does not match MQTT_CERT_SHA256")
        return _Bounded(s, raw, self._d)


class _Mqtt:
    """umqtt.simple 1.8 with a deadline on every step, errors as OSError,
    the broker's address resolved once per join, and a fresh packet id."""

    def __init__(self, settings, client_id, will_topic):
        import socket
        from umqtt import simple
        self._d = _Deadline()
        simple.socket = _Sockets(socket, self._d)
        host = settings["mqtt_server"]
        tls = None
        if settings["mqtt_tls"]:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if settings["mqtt_ca_file"]:
                ctx.verify_mode = ssl.CERT_REQUIRED
                try:
                    ctx.load_verify_locations(cafile=settings["mqtt_ca_file"])
                except ValueError as e:  # "invalid cert": the link catches OSError only
                    raise OSError("mqtt: MQTT_CA_FILE %s is not a certificate (%s)" % (settings["mqtt_ca_file"], e))
            else:
                ctx.verify_mode = ssl.CERT_NONE
            tls = _Tls(ctx, host, settings.get("mqtt_cert_sha256"), self._d)
        # umqtt.simple sizes every field with len(): give it bytes, not characters.
        self.c = simple.MQTTClient(
            client_id.encode(), resolve(host), settings["mqtt_port"],
            user=settings["mqtt_user"].encode() or None, password=settings["mqtt_pass"].encode() or None,
            keepalive=settings["mqtt_keepalive"], ssl=tls)
        self.c.set_last_will(will_topic.encode(), b"offline", retain=True, qos=1)
        # The link's watchdog feed, called after every step: whoever calls
        # (link, hooks, mqtt_retained), no two steps run without a feed between.
        self.feed = None

    def _step(self, fn, *args):
        self._d.start()
        try:
            return fn(*args)
        except OSError:
            raise
        except Exception as e:  # umqtt reports protocol trouble with assert
            raise OSError("mqtt: %r" % (e,))
        finally:
            if self.feed is not None:
                self.feed()

    def connect(self):
        # The timeout argument matters: without it umqtt makes the socket blocking.
        return self._step(self.c.connect, True, STEP_MS / 1000)

    def publish(self, topic, payload, retain=False, qos=1):
        if self.c.pid >= 65000:
            # umqtt.simple never wraps its packet id; reconnect before it does.
            raise OSError("mqtt: packet ids used up, reconnecting")
        if isinstance(topic, str):
            topic = topic.encode()
        if isinstance(payload, str):
            payload = payload.encode()
        self._step(self.c.publish, topic, payload, retain, qos)

    def _ping(self):
        self.c.ping()
        # umqtt leaves the PINGRESP unread; wait for it, so a broker that has
        # stopped answering is found within the deadline.
        while True:
            op = self.c.wait_msg()
            if op is None:
                return
            if op == 0x40:
                self.c.sock.read(3)  # a late PUBACK: its length and packet id

    def ping(self):
        self._step(self._ping)

    def close(self):
        # No DISCONNECT: the link drops a client only after a failure, and then
        # the broker should publish the last will ('offline'). Closing never blocks.
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
    global _wdt
    if not ms:
        return _NoWatchdog()
    _wdt = machine.WDT(timeout=ms)
    return _wdt


# --- durability and health ---------------------------------------------------
# RP2040 watchdog SCRATCH0-3: kept through a watchdog reset, machine.reset()
# and a soft reset, cleared by a power cut (the SDK's reboot uses 4-7).
# Addresses as constants: the pulse IRQ writes them, and arithmetic on a value
# above 2^30 would allocate there.
_SCRATCH = (0x4005800C, 0x40058010, 0x40058014, 0x40058018)


def scratch_read(i):
    return machine.mem32[_SCRATCH[i]]


def scratch_write(i, value):
    machine.mem32[_SCRATCH[i]] = value


def reset_cause():
    """1 after a watchdog reset, 2 otherwise (soft reset, machine.reset())."""
    return 1 if machine.reset_cause() == machine.WDT_RESET else 2


def heap_free():
    import gc
    gc.collect()
    return gc.mem_free()


def wifi_rssi():
    try:
        return _wlan.status("rssi") if _wlan is not None and _wlan.isconnected() else 0
    except (OSError, ValueError):
        return 0


_retained = [None]


def _keep_retained(topic, msg):
    _retained[0] = (topic, msg)


def mqtt_retained(client, topic):
    """The retained message on `topic`, or None. A broker sends the retained
    message right after SUBACK and before it answers a later PINGREQ, so the
    PINGRESP ends the wait with no timeout of its own. umqtt.simple has no
    unsubscribe: the board's own later publishes on the topic come back and
    land in this callback, harmlessly."""
    t = topic.encode()
    _retained[0] = None
    client.c.set_callback(_keep_retained)
    client._step(client.c.subscribe, t, 0)
    client._step(client._ping)
    got = _retained[0]
    return got[1] if got is not None and got[0] == t else None
