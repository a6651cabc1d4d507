"""Control events: the registry as an append-only sequence on the control stream.

Every event names its org, the admin who caused it (``actor``: an admin's name, or ``operator``
for the installation's bootstrap token) and carries a chron id
(``event_id``) so that Chron records it as a leaf like a decision. Events are tagged by ``type``.
Every appended event is signed by the control service (``auth``); the gates and Chron apply or
store none that does not verify (:mod:`claiim_core.eventauth`).
"""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import UNSET, Struct, UnsetType

from claiim_core.document import PolicyDocument
from claiim_core.schemas import EventAuth

CONTROL_SCHEMA = "claiim.control/1"


class ControlEventBase(Struct, tag_field="type", frozen=True, kw_only=True):
    schema: str = CONTROL_SCHEMA
    event_id: str
    at: str
    actor: str
    org: str
    auth: EventAuth | None = None
    """The control service's signature, added when the event is appended (never inside a proposal)."""


class OrgCreated(ControlEventBase, tag="org.created", frozen=True):
    description: str = ""


class SkillPublished(ControlEventBase, tag="skill.published", frozen=True):
    name: str
    version: int
    description: str
    actions: tuple[str, ...]
    content_hash: str


class PolicyPublished(ControlEventBase, tag="policy.published", frozen=True):
    name: str
    version: int
    description: str
    document: PolicyDocument
    content_hash: str


class AgentRegistered(ControlEventBase, tag="agent.registered", frozen=True):
    agent_id: str
    anchor: str
    description: str
    skills: tuple[str, ...]
    policy: str
    token_hash: str


class AgentUpdated(ControlEventBase, tag="agent.updated", frozen=True):
    """Anchor, description, skills or bound policy changed; the token stays as it was."""

    agent_id: str
    anchor: str
    description: str
    skills: tuple[str, ...]
    policy: str


class AgentSuspended(ControlEventBase, tag="agent.suspended", frozen=True):
    """The kill switch: every check of the agent is denied until it is reactivated."""

    agent_id: str
    reason: str


class AgentReactivated(ControlEventBase, tag="agent.reactivated", frozen=True):
    agent_id: str
    reason: str


class AgentTokenRotated(ControlEventBase, tag="agent.token-rotated", frozen=True):
    """A new token replaces the old one, which is denied as rotated out from now on, or from
    ``grace_until`` (an RFC 3339 time) when the rotation gave it a grace period. ``grace_until`` is
    left out of the encoding, not written as null, for an immediate rotation, so that such events
    keep the bytes (and the signature) they had before the field existed."""

    agent_id: str
    token_hash: str
    grace_until: str | UnsetType = UNSET


class AgentTokenRevoked(ControlEventBase, tag="agent.token-revoked", frozen=True):
    """The agent has no valid token until one is rotated in."""

    agent_id: str
    reason: str


class AdminEnrolled(ControlEventBase, tag="admin.enrolled", frozen=True):
    """A person of ``org`` with a role: ``admin`` (read and change), ``auditor`` (read only) or
    ``anchor`` (decides the approvals of the agents it anchors and reads their records)."""

    name: str
    role: Literal["admin", "auditor", "anchor"]
    token_hash: str


class AdminRevoked(ControlEventBase, tag="admin.revoked", frozen=True):
    """The admin's token stops working; enrolling the name again issues a new one."""

    name: str
    reason: str


class ApprovalRuleSet(ControlEventBase, tag="org.approval-rule", frozen=True):
    """How many admins besides the proposer must approve a widening change in the org."""

    approvals: int


class AgentShadowSet(ControlEventBase, tag="agent.shadow-set", frozen=True):
    """A candidate policy version evaluated beside the agent's bound one, log-only: each decision
    records what it would have decided, and no answer changes. An empty ``policy`` removes it."""

    agent_id: str
    policy: str


class OrgWebhookSet(ControlEventBase, tag="org.webhook-set", frozen=True):
    """Where the org's waiting approvals are announced (a JSON POST); an empty ``url`` removes it."""

    url: str


class ApprovalGranted(ControlEventBase, tag="approval.granted", frozen=True):
    """A person (``actor``) granted one waiting approval: the agent's next wait gets ALLOW, once.
    ``request_hash`` is the hash of the request the person saw."""

    approval_id: str
    agent_id: str
    request_hash: str
    reason: str


class ApprovalRefused(ControlEventBase, tag="approval.refused", frozen=True):
    approval_id: str
    agent_id: str
    request_hash: str
    reason: str


class ApprovalExpired(ControlEventBase, tag="approval.expired", frozen=True):
    """Nobody decided the approval before it expired; the agent's wait gets DENY ``approval:expired``."""

    approval_id: str
    agent_id: str


ApprovalEvent = ApprovalGranted | ApprovalRefused | ApprovalExpired
AgentLifecycle = AgentSuspended | AgentReactivated | AgentTokenRotated | AgentTokenRevoked | AgentShadowSet
ChangeEvent = (OrgCreated | SkillPublished | PolicyPublished | AgentRegistered | AgentUpdated | AgentLifecycle
               | AdminEnrolled | AdminRevoked | ApprovalRuleSet | OrgWebhookSet)
"""The events that change the registry; a proposal holds some of them until it is approved."""


class ProposalCreated(ControlEventBase, tag="proposal.created", frozen=True):
    """A widening change, stored exactly, waiting for approvals.

    ``events`` are applied as they are (same ids, contents and proposer as actor) once enough other
    admins of the org approve; ``change_hash`` is their content hash. ``base`` holds the control
    sequence each changed aggregate had when proposed: if one has changed since, the proposal
    cannot be applied (it fails, and must be proposed again).
    """

    proposal_id: str
    summary: tuple[str, ...]
    events: tuple[ChangeEvent, ...]
    change_hash: str
    base: dict[str, int]
    approvals_required: int
    expires_at: str


class ProposalApproved(ControlEventBase, tag="proposal.approved", frozen=True):
    proposal_id: str
    change_hash: str
    """The hash of the change the approver saw: an approval is of exactly that change."""
    reason: str


class ProposalRejected(ControlEventBase, tag="proposal.rejected", frozen=True):
    proposal_id: str
    reason: str


class ProposalExpired(ControlEventBase, tag="proposal.expired", frozen=True):
    proposal_id: str


class ProposalApplied(ControlEventBase, tag="proposal.applied", frozen=True):
    """The stored change is in the registry (its events come just before this one)."""

    proposal_id: str


class ProposalFailed(ControlEventBase, tag="proposal.failed", frozen=True):
    """Approved, but the registry changed under the proposal: nothing of it was applied."""

    proposal_id: str
    reason: str


ProposalEvent = (ProposalCreated | ProposalApproved | ProposalRejected | ProposalExpired | ProposalApplied
                 | ProposalFailed)
ControlEvent = ChangeEvent | ProposalEvent | ApprovalEvent

_decoder = msgspec.json.Decoder(ControlEvent)


def decode_control(data: bytes) -> ControlEvent:
    """Decode a control event; raises ``msgspec.DecodeError`` or ``ValidationError``."""
    event: ControlEvent = _decoder.decode(data)
    return event


def aggregate(event: ControlEvent) -> tuple[str, str]:
    """The (kind, name) of the aggregate an event belongs to: its control subject's tail."""
    match event:
        case OrgCreated():
            return "org", event.org
        case AdminEnrolled() | AdminRevoked():
            return "admin", event.name
        case ApprovalRuleSet() | OrgWebhookSet():
            return "org", event.org
        case ApprovalGranted() | ApprovalRefused() | ApprovalExpired():
            return "approval", event.approval_id
        case (ProposalCreated() | ProposalApproved() | ProposalRejected() | ProposalExpired() | ProposalApplied()
              | ProposalFailed()):
            return "proposal", event.proposal_id
        case SkillPublished():
            return "skill", event.name
        case PolicyPublished():
            return "policy", event.name
        case (AgentRegistered() | AgentUpdated() | AgentSuspended() | AgentReactivated()
              | AgentTokenRotated() | AgentTokenRevoked() | AgentShadowSet()):
            return "agent", event.agent_id
