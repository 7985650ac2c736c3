"""The local broker's certificate authority: the broker's TLS certificate, and client
certificates whose subject names the principal (`CN=tenant-acme` signs in as
`User:tenant-acme`).

Why a TLS listener beside SCRAM: librdkafka before 2.6.1 (Debian 12's kcat links 2.0.2) sends a
SCRAM proof Kafka 4 refuses (confluentinc/librdkafka#4895), while its TLS client certificates
work; so an outside producer can publish with the distribution's kcat.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650
KEY_BITS = 2048


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Authority:
    """A certificate authority kept in a directory: `ca.pem` (public) and `ca.key` (owner-only),
    made the first time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_file = directory / "ca.pem"
        self.key_file = directory / "ca.key"
        if not (self.cert_file.is_file() and self.key_file.is_file()):
            self._create()

    def _create(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ragbus local CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        _write(self.key_file, _key_pem(key), private=True)
        _write(self.cert_file, cert.public_bytes(serialization.Encoding.PEM), private=False)

    def issue(self, common_name: str, cert_file: Path, key_file: Path, host: str = "") -> None:
        """A certificate for `common_name` signed by this authority: a server's when `host`
        (an IP address) is given, else a client's."""
        ca_key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if host else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if host:
            names = [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(key_file, _key_pem(key), private=True)
        _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), private=False)
