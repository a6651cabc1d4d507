"""Request ids: a retried request gets its first answer again; a reused id for another request is denied.

The gate remembers, per replica, each recorded decision of an authenticated request that carried a
``request_id``, for ``ttl`` seconds and at most ``size`` of them. A repeat of the same request
(same action, target and context) within that time gets the first reply again, with the same chron
id, and records nothing new: retries are idempotent. The same id with another request is answered
DENY ``request:replayed``, and that refusal is recorded. Unauthenticated and malformed requests are
never remembered, so nobody without the agent's token can claim its request ids.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from claiim_core.canonical import canonical_bytes
from claiim_core.schemas import DecisionEvent

UNREMEMBERED_RULES = frozenset({"authenticate", "request", "internal", "request-id"})

Key = tuple[str, str, str]


def key_of(event: DecisionEvent) -> Key | None:
    """The key of a decision that may be remembered, or None."""
    if not event.request_id or event.rule in UNREMEMBERED_RULES or not event.org:
        return None
    return event.org, event.agent_id, event.request_id


def fingerprint(event: DecisionEvent) -> bytes:
    return canonical_bytes([event.action, event.target, event.context])


@dataclass
class Seen:
    fingerprint: bytes
    reply: bytes
    at: float


class ReplayCache:
    def __init__(self, ttl: float = 600.0, size: int = 100_000) -> None:
        self.ttl = ttl
        self.size = size
        self._seen: OrderedDict[Key, Seen] = OrderedDict()

    def get(self, key: Key, now: float) -> Seen | None:
        seen = self._seen.get(key)
        if seen is not None and now - seen.at > self.ttl:
            del self._seen[key]
            return None
        return seen

    def remember(self, key: Key, event: DecisionEvent, reply: bytes, now: float) -> None:
        self._seen[key] = Seen(fingerprint(event), reply, now)
        self._seen.move_to_end(key)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
