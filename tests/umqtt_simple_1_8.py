"""Stand-in for micropython-lib's umqtt.simple 1.8 (micropython/umqtt.simple/umqtt/simple.py),
the version `picopower deploy` installs and package.json pins. Tests only.

It is the same protocol logic, traps included, so a test sees what a board
running the real library would see:

- `connect(clean_session=True, timeout=None)` (since 1.5) makes a new socket
  and calls `sock.settimeout(timeout)` on it: without a timeout argument the
  socket is blocking, so a silent broker blocks connect forever.
- `connect` resolves `server` with `socket.getaddrinfo` on every call.
- `ssl=True` wraps with the legacy `ssl.wrap_socket(sock, **ssl_params)` (no
  certificate check); an SSLContext is used as `ctx.wrap_socket(sock,
  server_hostname=server)` (1.6 restored the legacy form beside the context).
- `publish(qos=1)` reads until the PUBACK with its packet id arrives; it never
  retransmits.
- `wait_msg()` calls `sock.setblocking(True)` after its first read, wiping any
  timeout: later reads block forever on a stalled broker.
- `ping()` only sends PINGREQ; the PINGRESP is consumed by a later wait_msg.
- The packet id never wraps: the 65,536th QoS 1 publish packs id 0 (MicroPython's
  struct truncates) and waits for a PUBACK that never matches.
- Protocol trouble is an AssertionError; a refused CONNACK is MQTTException(code).
- It writes with MicroPython's `sock.write(buf, n)` and reads with `sock.read(n)`,
  so it needs a MicroPython-like socket (tests/fakenet.py) and does not run over
  CPython's socket module, like the real one.
"""

import socket  # tests replace this (as board.py does) with a MicroPython-like socket module
import struct

VERSION = "1.8.0"


class MQTTException(Exception):
    pass


def _remaining_length(buf, start, n):
    """MQTT's variable-length size into buf[start:]; returns the index after it."""
    i = start
    while n > 0x7F:
        buf[i] = (n & 0x7F) | 0x80
        n >>= 7
        i += 1
    buf[i] = n
    return i + 1


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None, ssl_params={}):
        self.client_id = client_id
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.ssl_params = ssl_params
        self.sock = None
        self.pid = 0
        self.cb = None
        self.lw_topic = self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False

    # -- the library's own traps, one per method --------------------------------
    def _send_str(self, s):
        self.sock.write(struct.pack("!H", len(s)))
        self.sock.write(s)

    def _recv_len(self):
        n = sh = 0
        while True:
            b = self.sock.read(1)[0]
            n |= (b & 0x7F) << sh
            if not b & 0x80:
                return n
            sh += 7

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        assert 0 <= qos <= 2
        assert topic
        self.lw_topic, self.lw_msg, self.lw_qos, self.lw_retain = topic, msg, qos, retain

    def connect(self, clean_session=True, timeout=None):
        self.sock = socket.socket()
        self.sock.settimeout(timeout)  # None: blocking, whatever was set before
        addr = socket.getaddrinfo(self.server, self.port)[0][-1]  # a DNS query on every connect
        self.sock.connect(addr)
        if self.ssl is True:
            import ssl
            self.sock = ssl.wrap_socket(self.sock, **self.ssl_params)
        elif self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        flags = clean_session << 1
        size = 10 + 2 + len(self.client_id)
        if self.user:
            size += 2 + len(self.user) + 2 + len(self.pswd)
            flags |= 0xC0
        if self.lw_topic:
            size += 2 + len(self.lw_topic) + 2 + len(self.lw_msg)
            flags |= 0x4 | (self.lw_qos & 0x1) << 3 | (self.lw_qos & 0x2) << 3 | self.lw_retain << 5
        variable = bytearray(b"\x04MQTT\x04\0\0\0")
        variable[6] = flags
        if self.keepalive:
            assert self.keepalive < 65536
            variable[7] = self.keepalive >> 8
            variable[8] = self.keepalive & 0xFF
        fixed = bytearray(b"\x10\0\0\0\0\0")
        # One byte past the size: the 0 that starts the protocol name's length.
        self.sock.write(fixed, _remaining_length(fixed, 1, size) + 1)
        self.sock.write(variable)
        self._send_str(self.client_id)
        if self.lw_topic:
            self._send_str(self.lw_topic)
            self._send_str(self.lw_msg)
        if self.user:
            self._send_str(self.user)
            self._send_str(self.pswd)
        resp = self.sock.read(4)
        assert resp[0] == 0x20 and resp[1] == 0x02
        if resp[3] != 0:
            raise MQTTException(resp[3])
        return resp[2] & 1

    def disconnect(self):
        self.sock.write(b"\xe0\0")
        self.sock.close()

    def ping(self):
        self.sock.write(b"\xc0\0")  # the PINGRESP is left for a later wait_msg()

    def publish(self, topic, msg, retain=False, qos=0):
        size = 2 + len(topic) + len(msg) + (2 if qos > 0 else 0)
        assert size < 2097152
        pkt = bytearray(b"\x30\0\0\0")
        pkt[0] |= qos << 1 | retain
        self.sock.write(pkt, _remaining_length(pkt, 1, size))
        self._send_str(topic)
        if qos > 0:
            self.pid += 1  # never wraps
            pid = self.pid
            # MicroPython's struct.pack_into keeps the low 16 bits (CPython's would raise).
            struct.pack_into("!H", pkt, 0, pid & 0xFFFF)
            self.sock.write(pkt, 2)
        self.sock.write(msg)
        if qos == 1:
            while True:  # no deadline, no retransmission
                if self.wait_msg() == 0x40:
                    assert self.sock.read(1) == b"\x02"
                    got = self.sock.read(2)
                    if got[0] << 8 | got[1] == pid:
                        return
        elif qos == 2:
            assert 0

    def subscribe(self, topic, qos=0):
        assert self.cb is not None, "Subscribe callback is not set"
        self.pid += 1
        pkt = bytearray(b"\x82\0\0\0")
        struct.pack_into("!BH", pkt, 1, 2 + 2 + len(topic) + 1, self.pid & 0xFFFF)
        self.sock.write(pkt)
        self._send_str(topic)
        self.sock.write(qos.to_bytes(1, "little"))
        while True:
            if self.wait_msg() == 0x90:
                resp = self.sock.read(4)
                assert resp[1] == pkt[2] and resp[2] == pkt[3]
                if resp[3] == 0x80:
                    raise MQTTException(resp[3])
                return

    def wait_msg(self):
        res = self.sock.read(1)
        self.sock.setblocking(True)  # from here on every read may block forever
        if res is None:
            return None
        if res == b"":
            raise OSError(-1)
        if res == b"\xd0":  # PINGRESP
            assert self.sock.read(1)[0] == 0
            return None
        op = res[0]
        if op & 0xF0 != 0x30:
            return op
        size = self._recv_len()
        n = self.sock.read(2)
        n = n[0] << 8 | n[1]
        topic = self.sock.read(n)
        size -= n + 2
        pid = 0
        if op & 6:
            p = self.sock.read(2)
            pid = p[0] << 8 | p[1]
            size -= 2
        msg = self.sock.read(size)
        self.cb(topic, msg)
        if op & 6 == 2:
            ack = bytearray(b"\x40\x02\0\0")
            struct.pack_into("!H", ack, 2, pid)
            self.sock.write(ack)
        elif op & 6 == 4:
            assert 0
        return op

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()
