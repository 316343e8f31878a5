"""The sealed-secrets controller's certificate: read, checked, and fetched from an https URL.

kubeseal refuses what the controller cannot decrypt for (pkg/kubeseal `ParseKey`): anything
but a PEM certificate, a key that is not RSA, a certificate past its NotAfter. So do we,
each as a message that names the file and, for dates, gives them.
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from pipeline.errors import ConfigError, SetupError

MAX_CERTIFICATE_BYTES = 1 << 20
FETCH_SECONDS = 30.0


@dataclass(frozen=True)
class Certificate:
    name: str  # the file or URL it came from, as the user gave it
    public_key: rsa.RSAPublicKey
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def key_bits(self) -> int:
        return self.public_key.key_size

    @property
    def key_bytes(self) -> int:
        return (self.public_key.key_size + 7) // 8

    def validity(self) -> str:
        return f"valid from {_day(self.not_before)} to {_day(self.not_after)}"

    def expiry_problem(self, now: dt.datetime) -> str | None:
        """Why the controller would no longer accept values sealed now, or None."""
        if now > self.not_after:
            return f"the certificate expired on {_day(self.not_after)} ({self.validity()})"
        return None


def _day(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_certificate(data: bytes, name: str) -> Certificate | str:
    """The certificate, or what is wrong with it (errors as values; the caller names the file)."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        hint = (
            " (that is a private key: use the controller's public certificate)"
            if (b"PRIVATE KEY-----" in data)
            else ""
        )
        return f"not a PEM certificate: no BEGIN CERTIFICATE block{hint}"
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        return f"not a readable PEM certificate: {exc}"
    try:
        public_key = certificate.public_key()
    except ValueError as exc:  # an unsupported algorithm
        return f"the certificate's key cannot be read: {exc}"
    if not isinstance(public_key, rsa.RSAPublicKey):
        algorithm = type(public_key).__name__.removeprefix("_").replace("PublicKey", "")
        return (
            f"the certificate's key is {algorithm or 'not RSA'}, not RSA: the sealed-secrets "
            "controller seals with an RSA key"
        )
    return Certificate(
        name=name,
        public_key=public_key,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def certificate_for_sealing(data: bytes, name: str, now: dt.datetime) -> Certificate:
    """A certificate values may be sealed for now; anything else is exit 2 naming `name`."""
    parsed = parse_certificate(data, name)
    if isinstance(parsed, str):
        raise ConfigError(parsed, file=name, field="--cert")
    expired = parsed.expiry_problem(now)
    if expired is not None:
        raise ConfigError(
            f"{expired}; fetch the controller's current certificate "
            "(kubeseal --fetch-cert) before sealing",
            file=name,
            field="--cert",
        )
    return parsed


def read_certificate_bytes(location: str) -> bytes:
    """The bytes of a certificate file, or of an https URL (never plain http)."""
    if location.startswith("https://"):
        return fetch_certificate(location)
    if location.startswith(("http://", "ftp://", "file://")):
        raise ConfigError(
            "a certificate URL must be https://: a certificate fetched in the clear could be "
            "swapped for one whose key someone else holds",
            field="--cert",
        )
    try:
        with open(location, "rb") as stream:  # noqa: PTH123 - a str path as the user gave it
            data = stream.read(MAX_CERTIFICATE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the certificate: {exc.strerror}", file=location, field="--cert"
        ) from None
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise ConfigError("larger than 1 MiB: not a certificate", file=location, field="--cert")
    return data


def fetch_certificate(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/x-pem-file, */*"})  # noqa: S310 - https only, checked by the caller
    try:
        with urllib.request.urlopen(request, timeout=FETCH_SECONDS) as response:  # noqa: S310
            data: bytes = response.read(MAX_CERTIFICATE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ConfigError(
            f"the server answered HTTP {exc.code} {exc.reason}", file=url, field="--cert"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SetupError(f"{url}: the certificate could not be fetched: {reason}") from None
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise ConfigError("larger than 1 MiB: not a certificate", file=url, field="--cert")
    return data
