"""A sealing key pair made in the test: an RSA key and a self-signed certificate for it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    cert: Path
    key: Path
    private_key: rsa.RSAPrivateKey


def _certificate(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def make_pki(folder: Path, *, bits: int = 2048, days: int = 30) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    now = dt.datetime.now(dt.UTC)
    cert = folder / "cert.pem"
    cert.write_bytes(
        _certificate(private_key, now - dt.timedelta(days=1), now + dt.timedelta(days))
    )
    key = folder / "key.pem"
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return Pki(cert, key, private_key)


def expired_certificate(path: Path) -> Path:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        _certificate(
            private_key,
            dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
        )
    )
    return path


def ec_certificate(path: Path) -> Path:
    private_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    path.write_bytes(_certificate(private_key, now, now + dt.timedelta(days=1)))
    return path


def tls_identity(folder: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 (its own CA) and its key."""
    import ipaddress  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    cert = folder / "tls.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key = folder / "tls-key.pem"
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key
