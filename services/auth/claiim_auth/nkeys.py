"""NATS nkeys (pure): Ed25519 keys written in NATS's base32 form, as nats-server expects them.

A public key is ``base32(prefix || key || crc16)``: ``A...`` an account, ``U...`` a user, ``N...``
a server. A seed is ``base32(seed-prefix bits || key-type bits || 32 bytes || crc16)``:
``SA...`` an account's seed. The CRC is CRC-16/XMODEM, little-endian. The auth service holds the
account seed whose public key the server's ``auth_callout.issuer`` names, and signs the users it
admits with it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import cached_property

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

PREFIX_SEED = 18 << 3
PREFIX_ACCOUNT = 0
PREFIX_SERVER = 13 << 3
PREFIX_USER = 20 << 3


class NkeyError(ValueError):
    """Not a valid nkey: bad base32, bad checksum or the wrong kind of key."""


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, initial value 0)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw + crc16(raw).to_bytes(2, "little")).decode().rstrip("=")


def _decode(text: str) -> bytes:
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as e:
        raise NkeyError(f"not base32: {e}") from e
    if len(raw) < 3 or crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        raise NkeyError("bad checksum")
    return raw[:-2]


def public_key(prefix: int, key: bytes) -> str:
    return _encode(bytes([prefix]) + key)


def decode_public(text: str, prefix: int) -> bytes:
    """The 32 key bytes of a public nkey of the kind ``prefix``; raises :class:`NkeyError`."""
    raw = _decode(text)
    if len(raw) != 33 or raw[0] != prefix:
        raise NkeyError(f"not a public key of the expected kind: {text[:1]}...")
    return raw[1:]


def verify(public: str, prefix: int, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the signature of ``data`` by the public nkey ``public``."""
    try:
        VerifyKey(decode_public(public, prefix)).verify(data, signature)
    except (NkeyError, BadSignatureError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class KeyPair:
    """An nkey with its seed: signs, and names itself by its public key."""

    prefix: int
    seed: bytes

    @classmethod
    def from_seed(cls, text: str) -> KeyPair:
        raw = _decode(text.strip())
        if len(raw) != 34 or raw[0] & 0xF8 != PREFIX_SEED:
            raise NkeyError("not an nkey seed (S...)")
        prefix = ((raw[0] & 0x07) << 5) | ((raw[1] & 0xF8) >> 3)
        return cls(prefix, raw[2:])

    @cached_property
    def _key(self) -> SigningKey:
        return SigningKey(self.seed)

    @property
    def seed_text(self) -> str:
        return _encode(bytes([PREFIX_SEED | (self.prefix >> 5), (self.prefix & 0x1F) << 3]) + self.seed)

    @cached_property
    def public_key(self) -> str:
        return public_key(self.prefix, self._key.verify_key.encode())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data).signature

    def __repr__(self) -> str:
        return f"KeyPair({self.public_key}, <seed>)"
