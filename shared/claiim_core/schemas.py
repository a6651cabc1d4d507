"""Message schemas on the wire (JSON via msgspec) for the gate, decisions and Chron queries.

Schema versions are in the ``schema`` field of every event so that consumers (Chron, SIEMs) can
evolve. Control events live in :mod:`claiim_core.events`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

MAX_REQUEST_BYTES = 16 * 1024
"""Largest gate request the gate evaluates; larger ones are answered DENY ``request:oversized``."""

Outcome = Literal["ALLOW", "DENY"]
DECISION_SCHEMA = "claiim.decision/1"

ShortStr = Annotated[str, Meta(max_length=256)]
Action = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*\Z")]
Context = Annotated[dict[Annotated[str, Meta(max_length=64)], ShortStr], Meta(max_length=32)]


class CheckRequest(Struct, forbid_unknown_fields=True, frozen=True):
    """What an agent sends to the gate before it acts."""

    agent_id: Annotated[str, Meta(min_length=1, max_length=128)]
    token: Annotated[str, Meta(min_length=1, max_length=512)]
    action: Action
    target: ShortStr = ""
    context: Context = msgspec.field(default_factory=dict)
    request_id: Annotated[str, Meta(max_length=128)] | None = None


class DecisionEvent(Struct, frozen=True, kw_only=True):
    """One decision as published to the decisions stream and stored in Chron.

    It never carries the agent's token. ``control_seq`` is the control-stream sequence of the
    registry state the decision was evaluated against.
    """

    schema: str = DECISION_SCHEMA
    chron_id: str
    decided_at: str
    outcome: Outcome
    reason: str
    rule: str
    org: str
    agent_id: str
    anchor: str
    action: str
    target: str
    context: dict[str, str]
    request_id: str | None
    policy: str
    skill: str
    gate: str
    control_seq: int


class DecisionReply(Struct, frozen=True, kw_only=True):
    """The gate's answer. The agent may act only on ``outcome == "ALLOW"``."""

    outcome: Outcome
    reason: str
    rule: str
    chron_id: str
    policy: str
    skill: str
    anchor: str
    agent_id: str
    decided_at: str


def reply_for(event: DecisionEvent) -> DecisionReply:
    """The reply that answers the request behind ``event``."""
    return DecisionReply(
        outcome=event.outcome,
        reason=event.reason,
        rule=event.rule,
        chron_id=event.chron_id,
        policy=event.policy,
        skill=event.skill,
        anchor=event.anchor,
        agent_id=event.agent_id,
        decided_at=event.decided_at,
    )


# -- Chron queries ---------------------------------------------------------------------------


class ChronQuery(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A request to Chron's query subject: list records, or show one by chron id."""

    admin_token: str
    op: Literal["list", "show"]
    chron_id: str | None = None
    agent_id: str | None = None
    outcome: Outcome | None = None
    since: str | None = None
    kind: Literal["decision", "control"] | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 50


class ChronRecord(Struct, frozen=True, kw_only=True):
    """One row of Chron as returned by queries."""

    chron_id: str
    kind: Literal["decision", "control"]
    recorded_at: str
    occurred_at: str
    stream: str
    stream_seq: int
    org: str
    agent_id: str
    outcome: str
    action: str
    target: str
    anchor: str
    policy: str
    skill: str
    reason: str
    rule: str
    gate: str
    control_seq: int
    event: msgspec.Raw


class ChronResult(Struct, frozen=True, kw_only=True):
    records: list[ChronRecord] = []
    error: str | None = None


# -- admin API -------------------------------------------------------------------------------


class ApplyRequest(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Apply a bundle (already parsed from YAML into plain data)."""

    admin_token: str
    bundle: dict[str, Any]
    dry_run: bool = False


class ApplyReply(Struct, frozen=True, kw_only=True):
    """``tokens`` holds the token of each newly registered agent: it is shown once, here."""

    ok: bool
    changes: list[str] = []
    tokens: dict[str, str] = {}
    error: str | None = None
    control_seq: int = 0


class AgentCommand(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Suspend or reactivate an agent, or rotate or revoke its token."""

    admin_token: str
    op: Literal["suspend", "reactivate", "rotate-token", "revoke-token"]
    agent_id: str
    reason: Annotated[str, Meta(max_length=512)] = ""


class AgentCommandReply(Struct, frozen=True, kw_only=True):
    """``token`` is set by rotate-token only: the new token, shown once, here."""

    ok: bool
    change: str = ""
    token: str | None = None
    error: str | None = None
    control_seq: int = 0


class RegistryQuery(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Read the registry: ``explain`` a decision without recording it, or list a policy's versions."""

    admin_token: str
    op: Literal["explain", "policy-versions"]
    agent_id: str = ""
    action: str = ""
    org: str = ""
    name: str = ""


class PolicyVersionInfo(Struct, frozen=True, kw_only=True):
    label: str
    version: int
    description: str
    skill: str
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    content_hash: str


class RegistryQueryReply(Struct, frozen=True, kw_only=True):
    ok: bool
    error: str | None = None
    outcome: str = ""
    reason: str = ""
    rule: str = ""
    steps: list[str] = []
    versions: list[PolicyVersionInfo] = []
    control_seq: int = 0
