"""Request ids: a retry gets its first answer from any gate replica; a reused id for another
request is denied.

The decision of an authenticated request that carries a ``request_id`` is published with a
``Nats-Msg-Id`` derived from its org, agent and request id (:func:`msg_id`). JetStream stores one
message per id within the decision stream's duplicate window (2 minutes), whichever replica
publishes it: a retry is refused as a duplicate, and the gate answers with the stored decision,
the first answer, chron id included; nothing new is recorded. The same id with another request
(another action, target or context) is answered DENY ``request:replayed``, and that refusal is
recorded under its own chron id. Unauthenticated and malformed requests never claim a request id,
so nobody without the agent's token can claim (or poison) its ids.
"""

from __future__ import annotations

import hashlib

from claiim_core.canonical import canonical_bytes
from claiim_core.reasons import AUTHENTICATE, INTERNAL, REQUEST, REQUEST_ID
from claiim_core.schemas import DecisionEvent

UNCLAIMED_RULES = frozenset({AUTHENTICATE, REQUEST, INTERNAL, REQUEST_ID})
"""Decisions of these rules never claim their request id."""


def claims_request_id(event: DecisionEvent) -> bool:
    return bool(event.request_id) and event.rule not in UNCLAIMED_RULES and bool(event.org)


def msg_id(event: DecisionEvent) -> str:
    """The decision's ``Nats-Msg-Id``: from its request id when it claims one, else its chron id."""
    if not claims_request_id(event):
        return event.chron_id
    key = b"\x00".join(s.encode() for s in (event.org, event.agent_id, event.request_id or ""))
    return "rq-" + hashlib.sha256(key).hexdigest()[:40]


def fingerprint(event: DecisionEvent) -> bytes:
    """What a retry must repeat to get the first answer: the action, target and context."""
    return canonical_bytes([event.action, event.target, event.context])
