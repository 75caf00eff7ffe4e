"""Throw-away X.509 material for TLS tests, made with `cryptography`.

    ca = CA(tmp_path)                               # ca.pem, ca.der
    paths = ca.server(tmp_path, ["127.0.0.1"])      # (ca.pem, server.pem, server.key)
    ca.server(tmp_path, ["broker.lan"], name="wrong-host")
    ca.server(tmp_path, ["127.0.0.1"], days=(-10, -1), name="expired")

EC P-256 keys (fast to make; Mosquitto and mbedTLS both take them). IP
addresses go into an iPAddress subjectAltName, names into a dNSName one.
"""

import datetime
import hashlib
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _san(host):
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class CA:
    def __init__(self, directory, cn="picopower test CA"):
        os.makedirs(directory, exist_ok=True)
        self.dir = str(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(cn)).issuer_name(_name(cn))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        tag = cn.replace(" ", "_")
        self.pem = _write(os.path.join(self.dir, tag + ".pem"), self.cert.public_bytes(serialization.Encoding.PEM))
        # The form to copy to a Pico W (load_verify_locations(cafile="ca.der")).
        self.der = _write(os.path.join(self.dir, tag + ".der"), self.cert.public_bytes(serialization.Encoding.DER))

    def server(self, directory, hosts, days=(-1, 2), name="server"):
        """A server certificate for `hosts`, valid from now+days[0] to now+days[1] (days)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(_name(hosts[0])).issuer_name(self.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now + datetime.timedelta(days=days[0]))
                .not_valid_after(now + datetime.timedelta(days=days[1]))
                .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        os.makedirs(directory, exist_ok=True)
        crt = _write(os.path.join(str(directory), name + ".pem"), cert.public_bytes(serialization.Encoding.PEM))
        k = _write(os.path.join(str(directory), name + ".key"), _key_pem(key))
        if os.geteuid() != 0:
            os.chmod(k, 0o600)
        return self.pem, crt, k


def sha256_fingerprint(cert_pem_path):
    """Hex SHA-256 of the certificate's DER: what a board compares getpeercert(True) against."""
    with open(cert_pem_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
