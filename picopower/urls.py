"""MQTT broker URLs for every command: mqtt://[user:pass@]host[:port], mqtts://.

The password is kept out of `safe`, the form used in logs, errors and plans.
"""

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from picopower.errors import UserError


class UrlError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str = ""
    password: str = ""
    ca_file: str = ""

    @property
    def safe(self):
        user = (self.username + "@") if self.username else ""
        return "%s://%s%s:%d" % ("mqtts" if self.tls else "mqtt", user, self.host, self.port)

    def __repr__(self):
        return "BrokerUrl(%s)" % self.safe

    __str__ = __repr__


def parse_broker(text, ca_file=""):
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise UrlError("bad broker URL %r: %s" % (_mask(text), e)) from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise UrlError("broker URL must start with mqtt:// or mqtts://, got %r" % _mask(text))
    if not parts.hostname:
        raise UrlError("broker URL has no host: %r" % _mask(text))
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, port or (8883 if tls else 1883), tls,
                     unquote(parts.username or ""), unquote(parts.password or ""), ca_file or "")


def _mask(text):
    """The URL with any password replaced, for error messages."""
    if "@" in text and "://" in text:
        scheme, rest = text.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return "%s://%s:***@%s" % (scheme, user, host)
    return text
