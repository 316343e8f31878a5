"""The sealed-secrets wire format, as the controller decrypts it.

Source: bitnami-labs/sealed-secrets v0.40.0 (the Go module proxy's copy), pkg/crypto/crypto.go
`HybridEncrypt`/`HybridDecrypt` and pkg/apis/sealedsecrets/v1alpha1/sealedsecret_expansion.go
`EncryptionLabel`, `SecretScope`, `UpdateScopeAnnotations`. Per value:

    uint16 big-endian length of the RSA ciphertext || RSA ciphertext || AES-GCM ciphertext

where a fresh 32-byte session key is RSA-OAEP encrypted (SHA-256, MGF1 SHA-256) with the
scope's label (strict `namespace/name`, namespace-wide `namespace`, cluster-wide empty), and
the value is sealed with AES-256-GCM under that key with a zero nonce (the key is used once).
The base64 (standard alphabet, padded) of that goes in `spec.encryptedData.<key>`.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_KEY_BYTES = 32
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
LENGTH_PREFIX_BYTES = 2
# RSA moduli a sealing key plausibly has when no certificate says which: the controller
# generates 4096-bit keys by default, and keys of 2048 bits and up are in use.
PLAUSIBLE_KEY_BITS = frozenset({2048, 3072, 4096, 6144, 8192})


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
    )


def seal(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    """One value, sealed exactly as `HybridEncrypt` does."""
    session_key = os.urandom(SESSION_KEY_BYTES)
    encrypted_key = public_key.encrypt(session_key, _oaep(label))
    sealed = AESGCM(session_key).encrypt(bytes(GCM_NONCE_BYTES), plaintext, None)
    return len(encrypted_key).to_bytes(LENGTH_PREFIX_BYTES, "big") + encrypted_key + sealed


def seal_text(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> str:
    return base64.b64encode(seal(public_key, plaintext, label)).decode("ascii")


def unseal(private_key: rsa.RSAPrivateKey, blob: bytes, label: bytes) -> bytes:
    """The inverse of `seal` (`HybridDecrypt`), for recovery and tests."""
    layout = split(blob)
    if isinstance(layout, str):
        raise ValueError(layout)  # noqa: TRY004 - a malformed value, not a wrong type
    session_key = private_key.decrypt(layout.encrypted_key, _oaep(label))
    return AESGCM(session_key).decrypt(bytes(GCM_NONCE_BYTES), layout.sealed_value, None)


@dataclass(frozen=True)
class Layout:
    encrypted_key: bytes
    sealed_value: bytes

    @property
    def key_bits(self) -> int:
        return len(self.encrypted_key) * 8


def decode(text: object) -> bytes | str:
    """The bytes of a base64 value, or why it is not one (never quoting the value)."""
    if not isinstance(text, str):
        return f"is a {type(text).__name__}, not a base64 string"
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return "is not valid base64 (standard alphabet, padded)"


def split(blob: bytes) -> Layout | str:
    """The two parts of a sealed value, or what is wrong with its layout."""
    if len(blob) < LENGTH_PREFIX_BYTES:
        return f"is {len(blob)} bytes long: too short for the 2-byte length of the session key"
    key_length = int.from_bytes(blob[:LENGTH_PREFIX_BYTES], "big")
    rest = len(blob) - LENGTH_PREFIX_BYTES
    if key_length == 0 or key_length > rest:
        return (
            f"says its sealed session key is {key_length} bytes, but {rest} bytes follow "
            "the length: the value is cut short or not a sealed value"
        )
    sealed_value = blob[LENGTH_PREFIX_BYTES + key_length :]
    if len(sealed_value) < GCM_TAG_BYTES:
        return (
            f"has {len(sealed_value)} bytes after the sealed session key, fewer than the "
            f"{GCM_TAG_BYTES}-byte AES-GCM tag: the value is cut short"
        )
    return Layout(blob[LENGTH_PREFIX_BYTES : LENGTH_PREFIX_BYTES + key_length], sealed_value)


def looks_sealed(text: str) -> bool:
    """A base64 string with the layout of a value sealed for a plausible key."""
    blob = decode(text)
    if isinstance(blob, str):
        return False
    layout = split(blob)
    return isinstance(layout, Layout) and layout.key_bits in PLAUSIBLE_KEY_BITS
