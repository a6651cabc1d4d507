"""Signed checkpoints in the C2SP ``tlog-checkpoint`` format, as ``signed-note`` with Ed25519.

A checkpoint note::

    claiim.example/chron            <- origin: names the log
    1234                            <- tree size
    q3Kf...base64 root hash...=     <- root hash
    time 2026-11-25T22:40:00.000000Z   <- claiim's extension line: when it was signed
                                    <- blank line
    — claiim-chron AbCd...base64(key id || signature)...

The key id is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key). Keys are written
as in Go's ``golang.org/x/mod/sumdb/note``: the verifier key ``NAME+HEXID+base64(0x01 || public)``
and the signer key ``PRIVATE+KEY+NAME+HEXID+base64(0x01 || seed)``, so other tooling can check
claiim's checkpoints.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cached_property

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

ED25519 = b"\x01"
DASH = "\u2014"


class CheckpointError(ValueError):
    """A key or note that cannot be parsed, or a signature that does not verify."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time: str = ""
    """When it was signed (RFC 3339), from claiim's ``time`` extension line; empty if absent."""

    def body(self) -> str:
        text = f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"
        return text + (f"time {self.time}\n" if self.time else "")

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[0] or not lines[1].isdigit():
            raise CheckpointError("not a checkpoint: want origin, tree size and root hash lines")
        if lines[1] != str(int(lines[1])):
            raise CheckpointError(f"tree size {lines[1]!r} has leading zeros")
        try:
            root = base64.b64decode(lines[2], validate=True)
        except ValueError as e:
            raise CheckpointError(f"root hash is not base64: {e}") from e
        if len(root) != 32:
            raise CheckpointError(f"root hash has {len(root)} bytes, not 32")
        time = next((line[5:] for line in lines[3:-1] if line.startswith("time ")), "")
        return cls(lines[0], int(lines[1]), root, time)


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise CheckpointError(f"key name {name!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class Verifier:
    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    @property
    def label(self) -> str:
        """``NAME+HEXID``: how signatures name this key."""
        return f"{self.name}+{self.key_id.hex()}"

    @cached_property
    def _key(self) -> VerifyKey:
        return VerifyKey(self.public)

    def __str__(self) -> str:
        return f"{self.label}+{base64.b64encode(ED25519 + self.public).decode()}"

    def verify_bytes(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``data``."""
        try:
            self._key.verify(data, signature)
        except (BadSignatureError, ValueError):  # ValueError: not 64 bytes
            return False
        return True

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """A verifier key ``NAME+HEXID+BASE64``; raises :class:`CheckpointError`."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a verifier key is NAME+HEXID+BASE64")
        name, hex_id, key = parts
        _check_name(name)
        try:
            raw = base64.b64decode(key, validate=True)
        except ValueError as e:
            raise CheckpointError(f"verifier key is not base64: {e}") from e
        if len(raw) != 33 or raw[:1] != ED25519:
            raise CheckpointError("verifier key is not an Ed25519 key")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id.lower():
            raise CheckpointError("verifier key id does not match its name and key")
        return verifier

    def open(self, note: str) -> Checkpoint:
        """The checkpoint in ``note`` if this key signed it; raises :class:`CheckpointError`."""
        body, sep, signatures = note.partition("\n\n")
        if not sep:
            raise CheckpointError("not a signed note: no blank line before the signatures")
        body += "\n"
        for line in signatures.splitlines():
            prefix = f"{DASH} {self.name} "
            if not line.startswith(prefix):
                continue
            try:
                raw = base64.b64decode(line[len(prefix):], validate=True)
            except ValueError:
                continue
            if len(raw) != 68 or raw[:4] != self.key_id:
                continue
            if not self.verify_bytes(raw[4:], body.encode()):
                raise CheckpointError(f"bad signature by {self.name}")
            return Checkpoint.parse_body(body)
        raise CheckpointError(f"no signature by {self.name}+{self.key_id.hex()}")


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        _check_name(name)
        if len(seed) != 32:
            raise CheckpointError("an Ed25519 seed has 32 bytes")
        return cls(name, seed)

    @cached_property
    def _key(self) -> SigningKey:
        return SigningKey(self.seed)

    @cached_property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self._key.verify_key.encode())

    def __str__(self) -> str:
        v = self.verifier
        return f"PRIVATE+KEY+{self.name}+{v.key_id.hex()}+{base64.b64encode(ED25519 + self.seed).decode()}"

    def __repr__(self) -> str:
        return f"Signer({self.name!r}, <secret>)"

    @classmethod
    def parse(cls, text: str) -> Signer:
        """A signer key ``PRIVATE+KEY+NAME+HEXID+BASE64``; raises :class:`CheckpointError`."""
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise CheckpointError("a checkpoint signing key is PRIVATE+KEY+NAME+HEXID+BASE64")
        try:
            raw = base64.b64decode(parts[4], validate=True)
        except ValueError as e:
            raise CheckpointError(f"signing key is not base64: {e}") from e
        if len(raw) != 33 or raw[:1] != ED25519:
            raise CheckpointError("signing key is not an Ed25519 key")
        signer = cls.from_seed(parts[2], raw[1:])
        if signer.verifier.key_id.hex() != parts[3].lower():
            raise CheckpointError("signing key id does not match its name and key")
        return signer

    def sign_bytes(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data``."""
        return self._key.sign(data).signature

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note of ``checkpoint``."""
        body = checkpoint.body()
        signature = self.sign_bytes(body.encode())
        line = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{body}\n{DASH} {self.name} {line}\n"
