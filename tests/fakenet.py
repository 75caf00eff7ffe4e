"""A MicroPython-like socket module on a virtual clock, and MQTT brokers that misbehave. Tests only.

`Net(clock).module()` stands in for the rp2 port's `socket` (lwIP, MicroPython
1.27) as umqtt.simple and board.py use it:

- `settimeout(None)` and `setblocking(True)` make a socket block forever;
  `settimeout(t)` bounds each wait by t seconds (then OSError(ETIMEDOUT));
  `setblocking(False)` / `settimeout(0)` make `read` return None when nothing
  has arrived.
- `read(n)` waits until n bytes or end of stream, each wait under the timeout;
  b"" at end of stream. `write(buf, n)` sends the first n bytes.
- `getaddrinfo(name, port)` costs a DNS query (counted in `Net.lookups`) unless
  the name is an IPv4 literal; it returns [(2, 1, 0, '', (ip, port))].

A blocking wait that nothing will ever end raises `BlockedForever` (a
BaseException, so no `except Exception` swallows it): on the Pico that call
never returns and the watchdog resets the board. Waits move the virtual clock
(`clock.advance_to(us)`), so pulses keep arriving during them, as the
interrupt handler sees them on the chip.

Brokers (`Broker`) answer on the virtual timeline with a delay, stay silent,
stall mid-PUBACK, close after each publish, or drop SYNs (a switched-off PC).
"""

try:
    import socket as _pysocket  # CPython's, taken before tests put a MicroPython-like one in sys.modules
except ImportError:  # under MicroPython (tests/test_network_on_micropython.py) only the virtual sockets run
    _pysocket = None

ETIMEDOUT = 110
ECONNREFUSED = 111
ECONNRESET = 104
EAGAIN = 11


class BlockedForever(BaseException):
    """A blocking socket call that nothing will end: the board hangs until the watchdog fires."""


def _is_ip(host):
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


class Clock:
    """Virtual microseconds for `Net` to wait on, and the MicroPython `time`
    functions board.py uses on them (30-bit ticks, as on the rp2 port)."""

    def __init__(self):
        self.us = 0

    def now_us(self):
        return self.us

    def advance_to(self, us):
        self.us = max(self.us, us)

    def ticks_ms(self):
        return (self.us // 1000) & 0x3FFFFFFF

    def ticks_add(self, t, delta):
        return (t + delta) & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

    def sleep_ms(self, ms):
        self.us += ms * 1000


class Net:
    def __init__(self, clock, dns=None, dns_ms=0):
        self.clock = clock  # .now_us() and .advance_to(us)
        self.dns = dict(dns or {})  # name -> ip
        self.dns_ms = dns_ms
        self.peers = {}  # (ip, port) -> Broker
        self.lookups = []
        self.sockets = []

    def module(self):
        net = self

        class _Module:
            AF_INET = 2
            SOCK_STREAM = 1
            SOCK_DGRAM = 2

            @staticmethod
            def socket(*args):
                s = Socket(net)
                net.sockets.append(s)
                return s

            @staticmethod
            def getaddrinfo(host, port, *args):
                return net.getaddrinfo(host, port)
        return _Module

    def getaddrinfo(self, host, port):
        if isinstance(host, bytes):
            host = host.decode()
        if not _is_ip(host):
            self.lookups.append(host)
            self.clock.advance_to(self.clock.now_us() + self.dns_ms * 1000)
            if host not in self.dns:
                raise OSError(-2)  # lwIP: name not resolved
            host = self.dns[host]
        return [(2, 1, 0, "", (host, port))]


class Socket:
    def __init__(self, net):
        self.net = net
        self.timeout = None
        self.peer = None
        self.pending = []  # (deliver_at_us, bytes); b"" is end of stream
        self.inbox = b""  # bytes, not bytearray: MicroPython's cannot delete a slice
        self.eof = False
        self.closed = False
        self.timeouts_set = []

    def settimeout(self, t):
        self.timeout = t
        self.timeouts_set.append(t)

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def _wait_until(self, at_us):
        """Wait for an event at `at_us` (None: never) under the socket's timeout."""
        clock = self.net.clock
        now = clock.now_us()
        if self.timeout is None:
            if at_us is None:
                raise BlockedForever("a blocking socket waits for a peer that never answers")
            clock.advance_to(max(now, at_us))
            return
        limit = now + int(self.timeout * 1000000)
        if at_us is None or at_us > limit:
            clock.advance_to(limit)
            raise OSError(ETIMEDOUT)
        clock.advance_to(max(now, at_us))

    def connect(self, addr):
        peer = self.net.peers.get(tuple(addr))
        if peer is not None and peer.refuses:
            raise OSError(ECONNREFUSED)
        if peer is None or peer.drops_syn:
            if self.timeout == 0:
                raise OSError(115)  # EINPROGRESS
            self._wait_until(None)
        self.peer = peer
        peer.accept(self)

    def write(self, buf, n=None):
        data = bytes(buf if n is None else memoryview(buf)[:n])
        if self.closed:
            raise OSError(9)  # EBADF
        if self.eof or self.peer is None:
            raise OSError(ECONNRESET)
        self.peer.receive(self, data)
        return len(data)

    send = write

    def _deliver(self):
        now = self.net.clock.now_us()
        while self.pending and self.pending[0][0] <= now:
            _, data = self.pending.pop(0)
            if data == b"":
                self.eof = True
            else:
                self.inbox += data

    def read(self, n):
        out = bytearray()
        while len(out) < n:
            self._deliver()
            if self.inbox:
                k = min(n - len(out), len(self.inbox))
                out += self.inbox[:k]
                self.inbox = self.inbox[k:]
                continue
            if self.eof:
                break
            if self.timeout == 0:
                if not out:
                    return None
                break
            self._wait_until(self.pending[0][0] if self.pending else None)
        return bytes(out)

    def recv(self, n):
        self._deliver()
        if not self.inbox and not self.eof:
            self._wait_until(self.pending[0][0] if self.pending else None)
            self._deliver()
        out = self.inbox[:n]
        self.inbox = self.inbox[n:]
        return out

    def close(self):
        self.closed = True
        if self.peer is not None:
            self.peer.gone(self)


class Broker:
    """An MQTT 3.1.1 broker on the virtual timeline that behaves as told.

    connack_ms / puback_ms   delay of each answer
    silent                   accepts TCP, never answers CONNECT
    stall_after              acknowledges this many PUBLISHes, then sends the
                             first byte of a PUBACK and nothing more
    close_after_publish      acknowledges each PUBLISH, then closes the connection
    trickle_ms               sends each answer one byte every trickle_ms
    drops_syn / refuses      the host does not answer / refuses TCP
    switch_off()             the broker's PC goes off: nothing answers any more,
                             on open connections or new ones
    """

    def __init__(self, connack_ms=0, puback_ms=0, silent=False, stall_after=None,
                 close_after_publish=False, drops_syn=False, refuses=False, trickle_ms=0):
        self.connack_ms = connack_ms
        self.puback_ms = puback_ms
        self.silent = silent
        self.stall_after = stall_after
        self.close_after_publish = close_after_publish
        self.drops_syn = drops_syn
        self.refuses = refuses
        self.trickle_ms = trickle_ms
        self.connects = []  # (client_id, will_topic, keepalive)
        self.published = []  # (topic, payload, retain, qos)
        self.pings = 0
        self.disconnects = 0
        self.retained = {}  # topic -> payload
        self.subscribes = []
        self.off = False
        self._buf = {}

    def switch_off(self):
        self.off = self.drops_syn = True

    def heal(self):
        self.off = False
        self.connack_ms = self.puback_ms = self.trickle_ms = 0
        self.silent = self.close_after_publish = self.drops_syn = self.refuses = False
        self.stall_after = None

    def accept(self, sock):
        self._buf[id(sock)] = b""

    def gone(self, sock):
        self._buf.pop(id(sock), None)

    def _send(self, sock, delay_ms, data):
        at = sock.net.clock.now_us() + delay_ms * 1000
        if self.trickle_ms and data:
            for i in range(len(data)):
                sock.pending.append((at + i * self.trickle_ms * 1000, data[i:i + 1]))
        else:
            sock.pending.append((at, data))
        sock.pending.sort(key=lambda p: p[0])

    def receive(self, sock, data):
        if self.off:
            return
        buf = self._buf.get(id(sock), b"") + data
        while True:
            packet, buf = _take_packet(buf)
            self._buf[id(sock)] = buf
            if packet is None:
                return
            self._handle(sock, packet[0], packet[1])

    def _handle(self, sock, first, body):
        kind = first & 0xF0
        if kind == 0x10:
            self._connect(sock, body)
        elif kind == 0x30:
            qos = (first >> 1) & 3
            n = body[0] << 8 | body[1]
            topic = bytes(body[2:2 + n])
            rest = body[2 + n:]
            pid = None
            if qos:
                pid, rest = bytes(rest[:2]), rest[2:]
            self.published.append((topic.decode(), bytes(rest), bool(first & 1), qos))
            if first & 1:
                if rest:
                    self.retained[topic.decode()] = bytes(rest)
                else:
                    self.retained.pop(topic.decode(), None)
            if qos == 1:
                if self.stall_after is not None and len(self.published) > self.stall_after:
                    self._send(sock, self.puback_ms, b"\x40")
                    return
                self._send(sock, self.puback_ms, b"\x40\x02" + pid)
            if self.close_after_publish:
                self._send(sock, self.puback_ms, b"")
        elif kind == 0x80:
            self._subscribe(sock, body)
        elif kind == 0xE0:
            self.disconnects += 1
        elif kind == 0xC0:
            self.pings += 1
            self._send(sock, self.puback_ms, b"\xd0\x00")

    def _subscribe(self, sock, body):
        """SUBACK, then the retained message of each (exact) topic, as brokers do."""
        pid = body[:2]
        n = body[2] << 8 | body[3]
        topic = body[4:4 + n].decode()
        self.subscribes.append(topic)
        self._send(sock, self.puback_ms, b"\x90\x03" + pid + b"\x00")
        if topic in self.retained:
            t = topic.encode()
            payload = self.retained[topic]
            size = 2 + len(t) + len(payload)
            head = b""
            while True:
                b = size & 0x7F
                size >>= 7
                head += bytes([b | (0x80 if size else 0)])
                if not size:
                    break
            self._send(sock, self.puback_ms, b"\x31" + head + bytes([len(t) >> 8, len(t) & 0xFF]) + t + payload)

    def _connect(self, sock, body):
        flags = body[7]
        keepalive = body[8] << 8 | body[9]
        pos = 10
        fields = []
        for present in (True, bool(flags & 0x04), bool(flags & 0x04), bool(flags & 0x80), bool(flags & 0x40)):
            if present:
                n = body[pos] << 8 | body[pos + 1]
                fields.append(bytes(body[pos + 2:pos + 2 + n]))
                pos += 2 + n
            else:
                fields.append(None)
        self.connects.append((fields[0].decode(), fields[1].decode() if fields[1] else None, keepalive))
        if not self.silent:
            self._send(sock, self.connack_ms, b"\x20\x02\x00\x00")


def _take_packet(buf):
    """((first byte, body) or None, the bytes after it): one whole MQTT packet off buf."""
    if len(buf) < 2:
        return None, buf
    size = shift = 0
    i = 1
    while True:
        if i >= len(buf):
            return None, buf
        b = buf[i]
        size |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    if len(buf) < i + size:
        return None, buf
    return (buf[0], buf[i:i + size]), buf[i + size:]


class LoopbackSockets:
    """MicroPython's socket API (read(n), write(buf, n), settimeout) over CPython sockets,
    for brokers on 127.0.0.1. Timeouts come from the operating system here, not the
    virtual clock; a timeout is CPython's TimeoutError, an OSError like MicroPython's."""

    AF_INET = 2
    SOCK_STREAM = 1

    @staticmethod
    def socket(*args):
        return _LoopbackSocket(_pysocket.socket(_pysocket.AF_INET, _pysocket.SOCK_STREAM))

    @staticmethod
    def getaddrinfo(host, port, *args):
        if isinstance(host, bytes):
            host = host.decode()
        if not host.startswith("127."):
            raise OSError(-2)  # never leave the machine
        return [(2, 1, 0, "", (host, port))]


class _LoopbackSocket:
    def __init__(self, s):
        self.s = s

    def settimeout(self, t):
        self.s.settimeout(t)

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def connect(self, addr):
        self.s.connect(tuple(addr))

    def write(self, buf, n=None):
        data = memoryview(buf)[:n] if n is not None else memoryview(buf)
        self.s.sendall(data)
        return len(data)

    def read(self, n):
        out = b""
        while len(out) < n:
            try:
                b = self.s.recv(n - len(out))
            except BlockingIOError:
                return out or None
            if not b:
                break
            out += b
        return out

    def close(self):
        self.s.close()
