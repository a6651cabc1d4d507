"""Authenticated events: no forged decision becomes a leaf, no forged control event is applied.

Anyone who can publish to NATS can put bytes on a stream; only the holders of these keys can make
events that the gates and Chron accept.

- **Decision events** carry an HMAC-SHA256 by the deciding gate's key (:class:`GateKey`). Chron
  (and the OCSF feed) hold the gate keys (:class:`GateKeyring`) and store no decision whose MAC
  does not verify.
- **Control events** carry an Ed25519 signature by the control service's key (a note key, as for
  checkpoints: :class:`~claiim_core.checkpoint.Signer`). The gates, the control service, the auth
  service and Chron hold the verifier keys (:class:`ControlKeyring`) and apply or store no event
  whose signature does not verify.

What is authenticated (``auth`` set to ``null`` in the canonical bytes)::

    decision:  "claiim.decision-auth/1\\n" || canonical(event)
    control:   "claiim.control-auth/1\\n" || decimal(prev) || "\\n" || canonical(event)

``prev`` is the stream sequence of the message before this one on the event's subject: the control
service appends with ``Nats-Expected-Last-Subject-Sequence: prev``, so a genuine event fits at
exactly one place in the stream and cannot be replayed later. Opening an event also checks that it
was published on the subject its content determines (a genuine event replayed under another
subject or org is refused) and that its key was not revoked before the event's stream sequence
(``revoked-after N``: events stored after sequence N with that key are refused; those before it
still verify, so a rebuild keeps every old record).

Why a MAC for decisions and signatures for control events: measured on the 2-core machine claiim
is developed on, an Ed25519 signature costs 31-57 µs and a verification 73-136 µs, an HMAC 5 µs.
The gate spends about 100 µs of CPU per decision, and Chron must verify faster than the gates
decide; per-decision signatures would have cost the gate a third of its throughput and capped
Chron below it. Control events are rare, so they get the stronger, publicly verifiable kind.
docs/security.md has the measurements and the key lifecycle.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from msgspec.structs import replace

from claiim_core.canonical import canonical_bytes
from claiim_core.checkpoint import CheckpointError, Signer, Verifier
from claiim_core.events import ControlEvent, aggregate
from claiim_core.names import Names
from claiim_core.schemas import DecisionEvent, EventAuth

DECISION_DOMAIN = b"claiim.decision-auth/1\n"
CONTROL_DOMAIN = b"claiim.control-auth/1\n"
GATE_KEY_PREFIX = "GATEKEY+"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
_REVOKED = re.compile(r"^(\S+)(?:\s+revoked-after\s+(\d+))?\Z")


class AuthError(ValueError):
    """The event is not authentic here: the message says why (never a secret)."""


class KeyFormatError(ValueError):
    """A key or keyring that cannot be parsed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class GateKey:
    """A gate's MAC key: an id (named in every decision it authenticates) and 32 secret bytes.

    Written ``GATEKEY+<id>+<base64 secret>``; ``claiim keygen gate ID`` makes one.
    """

    id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not _KEY_ID.match(self.id):
            raise KeyFormatError(f"gate key id {self.id!r} must match [A-Za-z0-9_.-]{{1,64}}")
        if len(self.secret) != 32:
            raise KeyFormatError("a gate key has 32 secret bytes")

    def __str__(self) -> str:
        return f"{GATE_KEY_PREFIX}{self.id}+{base64.b64encode(self.secret).decode()}"

    def __repr__(self) -> str:
        return f"GateKey({self.id!r}, <secret>)"

    @classmethod
    def parse(cls, text: str) -> GateKey:
        """``GATEKEY+<id>+<base64>``; raises :class:`KeyFormatError`."""
        text = text.strip()
        if not text.startswith(GATE_KEY_PREFIX):
            raise KeyFormatError(f"a gate key starts with {GATE_KEY_PREFIX}")
        key_id, sep, secret = text[len(GATE_KEY_PREFIX):].partition("+")
        if not sep:
            raise KeyFormatError("a gate key is GATEKEY+<id>+<base64>")
        try:
            raw = base64.b64decode(secret, validate=True)
        except binascii.Error as e:
            raise KeyFormatError(f"gate key {key_id!r}: the secret is not base64: {e}") from e
        return cls(key_id, raw)


K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Trusted(Generic[K]):
    key: K
    revoked_after: int | None = None
    """Events with this key stored after this stream sequence are refused; None: not revoked."""

    def check(self, name: str, seq: int | None) -> K:
        if self.revoked_after is not None and seq is not None and seq > self.revoked_after:
            raise AuthError(f"signed with {name}, revoked after stream sequence {self.revoked_after} "
                            f"(this event is at {seq})")
        return self.key


def _entries(text: str) -> Iterable[tuple[str, int | None]]:
    """Keyring lines (or comma-separated entries): ``KEY [revoked-after N]``; ``#`` starts a comment."""
    for raw in re.split(r"[\n,]", text):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _REVOKED.match(line)
        if m is None:
            raise KeyFormatError(f"keyring entry {line[:24]!r}...: want KEY or KEY revoked-after N")
        yield m.group(1), int(m.group(2)) if m.group(2) else None


class _Keyring(Generic[K]):
    """Trusted keys by the name events give them (``kind`` says which keys, in messages)."""

    kind = ""

    def __init__(self, keys: Iterable[Trusted[K]]) -> None:
        self._keys: dict[str, Trusted[K]] = {}
        for t in keys:
            name = self._name(t.key)
            if name in self._keys:
                raise KeyFormatError(f"{self.kind} {name!r} is listed twice")
            self._keys[name] = t

    @staticmethod
    def _name(key: K) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._keys)

    def knows(self, name: str) -> bool:
        return name in self._keys

    def entries(self) -> list[Trusted[K]]:
        return list(self._keys.values())

    def _key(self, name: str, seq: int | None) -> K:
        trusted = self._keys.get(name)
        if trusted is None:
            raise AuthError(f"unknown {self.kind} {name!r}: not in the keyring")
        return trusted.check(f"{self.kind} {name!r}", seq)


class GateKeyring(_Keyring[GateKey]):
    """The gate keys a verifier accepts, by id."""

    kind = "gate key"

    @staticmethod
    def _name(key: GateKey) -> str:
        return key.id

    @classmethod
    def parse(cls, text: str) -> GateKeyring:
        return cls(Trusted(GateKey.parse(key), after) for key, after in _entries(text))

    def secret(self, key_id: str, seq: int | None) -> bytes:
        return self._key(key_id, seq).secret


class ControlKeyring(_Keyring[Verifier]):
    """The control service's verifier keys (``NAME+HEXID+BASE64``) a verifier accepts."""

    kind = "control key"

    @staticmethod
    def _name(key: Verifier) -> str:
        return key.label

    @classmethod
    def parse(cls, text: str) -> ControlKeyring:
        try:
            return cls(Trusted(Verifier.parse(key), after) for key, after in _entries(text))
        except CheckpointError as e:
            raise KeyFormatError(f"control verifier key: {e}") from e

    def __contains__(self, verifier: Verifier) -> bool:
        found = self._keys.get(verifier.label)
        return found is not None and found.key == verifier

    def verifier(self, label: str, seq: int | None) -> Verifier:
        return self._key(label, seq)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sig(auth: EventAuth) -> bytes:
    try:
        return base64.b64decode(auth.sig, validate=True)
    except binascii.Error:
        raise AuthError("the signature is not base64") from None


# -- decisions -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _keyed(secret: bytes) -> hmac.HMAC:
    """HMAC-SHA256 keyed with ``secret`` and fed the domain: copied per event, not keyed again."""
    return hmac.new(secret, DECISION_DOMAIN, "sha256")


def _mac(secret: bytes, unsigned: bytes) -> bytes:
    h = _keyed(secret).copy()
    h.update(unsigned)
    return h.digest()


def _decision_mac(secret: bytes, unsigned: DecisionEvent) -> bytes:
    return _mac(secret, canonical_bytes(unsigned))


_NO_AUTH = b'"auth":null'


def seal_decision(event: DecisionEvent, key: GateKey) -> bytes:
    """The canonical bytes of ``event`` with the gate's MAC.

    The MAC covers the canonical bytes with ``auth`` null; the sealed bytes are the same bytes with
    that one member filled in. The member is found by its bytes: inside a JSON string every quote
    is escaped, so ``"auth":null`` occurs only as the event's own member."""
    unsigned = canonical_bytes(event if event.auth is None else replace(event, auth=None))
    auth = EventAuth(alg="hmac-sha256", key=key.id, sig=_b64(_mac(key.secret, unsigned)))
    return unsigned.replace(_NO_AUTH, b'"auth":' + canonical_bytes(auth), 1)


def check_decision(event: DecisionEvent, keyring: GateKeyring, seq: int | None = None) -> str:
    """The id of the gate key whose valid MAC ``event`` carries; raises :class:`AuthError`.

    ``seq``: the event's stream sequence, for revoked keys (None: do not check revocation).
    """
    auth = event.auth
    if auth is None:
        raise AuthError("the decision event carries no gate MAC")
    if auth.alg != "hmac-sha256":
        raise AuthError(f"a decision event must carry hmac-sha256, not {auth.alg}")
    secret = keyring.secret(auth.key, seq)
    if not hmac.compare_digest(_sig(auth), _decision_mac(secret, replace(event, auth=None))):
        raise AuthError(f"the MAC does not verify with gate key {auth.key!r}: the event was forged or altered")
    return auth.key


def decision_subject(names: Names, event: DecisionEvent) -> str:
    """Where ``event`` is published: its approval's subject when it asks for or ends one."""
    if event.approval:
        return names.approval_subject(event.org, event.agent_id, event.approval.id)
    return names.decision_subject(event.org, event.agent_id, event.outcome)


def open_decision(event: DecisionEvent, subject: str, seq: int, keyring: GateKeyring, names: Names) -> None:
    """Accept a decision event stored at ``seq`` on ``subject``, or raise :class:`AuthError`."""
    check_decision(event, keyring, seq)
    want = decision_subject(names, event)
    if subject != want:
        raise AuthError(f"a genuine decision replayed on {subject}; it belongs on {want}")


# -- control events ------------------------------------------------------------------------------


def _control_input(unsigned: ControlEvent, prev: int) -> bytes:
    return CONTROL_DOMAIN + str(prev).encode() + b"\n" + canonical_bytes(unsigned)


def seal_control(event: ControlEvent, prev: int, signer: Signer) -> bytes:
    """The canonical bytes of ``event`` signed to follow stream sequence ``prev`` on its subject."""
    signature = signer.sign_bytes(_control_input(event, prev))
    auth = EventAuth(alg="ed25519", key=signer.verifier.label, sig=_b64(signature), prev=prev)
    return canonical_bytes(replace(event, auth=auth))


def check_control(event: ControlEvent, keyring: ControlKeyring, seq: int | None = None) -> str:
    """The label of the control key whose valid signature ``event`` carries; raises :class:`AuthError`."""
    auth = event.auth
    if auth is None:
        raise AuthError("the control event carries no signature")
    if auth.alg != "ed25519" or auth.prev is None:
        raise AuthError("a control event must carry an ed25519 signature and prev")
    verifier = keyring.verifier(auth.key, seq)
    if not verifier.verify_bytes(_sig(auth), _control_input(replace(event, auth=None), auth.prev)):
        raise AuthError(f"the signature does not verify with control key {auth.key}: the event was forged or "
                        "altered")
    return auth.key


def open_control(event: ControlEvent, subject: str, seq: int, prev: int, keyring: ControlKeyring,
                 names: Names) -> None:
    """Accept the control event stored at ``seq`` on ``subject``, after the message at ``prev`` on
    that subject, or raise :class:`AuthError`."""
    check_control(event, keyring, seq)
    want = names.control_subject(event.org, *aggregate(event))
    if subject != want:
        raise AuthError(f"a genuine control event replayed on {subject}; it belongs on {want}")
    assert event.auth is not None and event.auth.prev is not None
    if event.auth.prev != prev:
        raise AuthError(f"a genuine control event replayed: signed to follow stream sequence {event.auth.prev} on "
                        f"its subject, found after {prev}")
