"""The registry projection: the state that control events build, as the gate sees it.

:meth:`Registry.apply` folds one control event in. The same sequence of events always gives the
same registry, so any replica started later rebuilds exactly what the others hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from claiim_core.document import PolicyDocument
from claiim_core.events import (
    AdminEnrolled,
    AdminRevoked,
    AgentReactivated,
    AgentRegistered,
    AgentShadowSet,
    AgentSuspended,
    AgentTokenRevoked,
    AgentTokenRotated,
    AgentUpdated,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRefused,
    ApprovalRuleSet,
    ControlEvent,
    OrgCreated,
    OrgWebhookSet,
    PolicyPublished,
    ProposalApplied,
    ProposalApproved,
    ProposalCreated,
    ProposalExpired,
    ProposalFailed,
    ProposalRejected,
    SkillPublished,
)
from claiim_core.refs import label, parse_ref
from claiim_core.tokens import Retired


@dataclass(frozen=True, slots=True)
class SkillVersion:
    org: str
    name: str
    version: int
    description: str
    actions: tuple[str, ...]
    content_hash: str

    @property
    def label(self) -> str:
        return label(self.name, self.version)


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    org: str
    name: str
    version: int
    description: str
    document: PolicyDocument
    content_hash: str

    @property
    def label(self) -> str:
        return label(self.name, self.version)


@dataclass(frozen=True, slots=True)
class AgentState:
    org: str
    agent_id: str
    anchor: str
    description: str
    skills: tuple[str, ...]
    policy: str
    token_hash: str
    status: Literal["active", "suspended"] = "active"
    retired_tokens: tuple[Retired, ...] = ()
    """Hashes of tokens no longer current, each with why (``rotated`` or ``revoked``) and, for the one
    last rotated out with a grace period, until when it is still accepted
    (:func:`claiim_core.tokens.check_token`)."""
    shadow: str = ""
    """A candidate policy version (a label) evaluated log-only beside ``policy``; empty: none."""


@dataclass(frozen=True, slots=True)
class AdminState:
    org: str
    name: str
    role: Literal["admin", "auditor", "anchor"]
    token_hash: str


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """What became of one approval: granted or refused by a person, or expired undecided."""

    status: Literal["granted", "refused", "expired"]
    by: str
    at: str
    reason: str
    event_id: str
    request_hash: str


ProposalStatus = Literal["pending", "applied", "rejected", "expired", "failed"]


@dataclass(frozen=True, slots=True)
class ProposalState:
    created: ProposalCreated
    approvals: tuple[tuple[str, str, str], ...] = ()
    """``(admin, at, reason)`` of each approval so far."""
    status: ProposalStatus = "pending"
    closed_by: str = ""
    closed_at: str = ""
    reason: str = ""

    @property
    def proposal_id(self) -> str:
        return self.created.proposal_id


@dataclass
class Registry:
    """Orgs, versioned skills and policies, agents and admins, at control-stream sequence ``last_seq``.

    Everything but ``orgs`` is keyed by ``(org, name)``: names are unique within an org only.
    ``admin_tokens`` maps the token hash of every enrolled admin to its key.
    """

    orgs: dict[str, str] = field(default_factory=dict)
    """Each org's description."""
    skills: dict[tuple[str, str], list[SkillVersion]] = field(default_factory=dict)
    policies: dict[tuple[str, str], list[PolicyVersion]] = field(default_factory=dict)
    agents: dict[tuple[str, str], AgentState] = field(default_factory=dict)
    admins: dict[tuple[str, str], AdminState] = field(default_factory=dict)
    admin_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    approvals_required: dict[str, int] = field(default_factory=dict)
    """Per org; an org not in it needs one approval besides the proposer's."""
    proposals: dict[tuple[str, str], ProposalState] = field(default_factory=dict)
    approvals: dict[tuple[str, str], ApprovalDecision] = field(default_factory=dict)
    """How each decided or expired approval ended, by ``(org, approval id)``; a waiting one is not here."""
    webhooks: dict[str, str] = field(default_factory=dict)
    """Per org: where waiting approvals are announced."""
    last_seq: int = 0
    subject_seq: dict[str, int] = field(default_factory=dict)

    def apply(self, seq: int, subject: str, event: ControlEvent) -> None:
        """Fold in the event stored at control-stream sequence ``seq`` on ``subject``."""
        match event:
            case OrgCreated():
                self.orgs[event.org] = event.description
            case AdminEnrolled():
                self.admins[(event.org, event.name)] = AdminState(event.org, event.name, event.role,
                                                                  event.token_hash)
                self.admin_tokens[event.token_hash] = (event.org, event.name)
            case AdminRevoked():
                gone = self.admins.pop((event.org, event.name))
                del self.admin_tokens[gone.token_hash]
            case ApprovalRuleSet():
                self.approvals_required[event.org] = event.approvals
            case OrgWebhookSet():
                if event.url:
                    self.webhooks[event.org] = event.url
                else:
                    self.webhooks.pop(event.org, None)
            case ApprovalGranted() | ApprovalRefused():
                self.approvals[(event.org, event.approval_id)] = ApprovalDecision(
                    "granted" if isinstance(event, ApprovalGranted) else "refused", event.actor, event.at,
                    event.reason, event.event_id, event.request_hash)
            case ApprovalExpired():
                self.approvals[(event.org, event.approval_id)] = ApprovalDecision(
                    "expired", event.actor, event.at, "", event.event_id, "")
            case ProposalCreated():
                self.proposals[(event.org, event.proposal_id)] = ProposalState(event)
            case ProposalApproved():
                p = self.proposals[(event.org, event.proposal_id)]
                self.proposals[(event.org, event.proposal_id)] = replace(
                    p, approvals=(*p.approvals, (event.actor, event.at, event.reason)))
            case ProposalRejected():
                self._close(event.org, event.proposal_id, "rejected", event.actor, event.at, event.reason)
            case ProposalExpired():
                self._close(event.org, event.proposal_id, "expired", event.actor, event.at, "")
            case ProposalApplied():
                self._close(event.org, event.proposal_id, "applied", event.actor, event.at, "")
            case ProposalFailed():
                self._close(event.org, event.proposal_id, "failed", event.actor, event.at, event.reason)
            case SkillPublished():
                self.skills.setdefault((event.org, event.name), []).append(
                    SkillVersion(event.org, event.name, event.version, event.description,
                                 event.actions, event.content_hash)
                )
            case PolicyPublished():
                self.policies.setdefault((event.org, event.name), []).append(
                    PolicyVersion(event.org, event.name, event.version, event.description,
                                  event.document, event.content_hash)
                )
            case AgentRegistered():
                self.agents[(event.org, event.agent_id)] = AgentState(
                    event.org, event.agent_id, event.anchor, event.description,
                    event.skills, event.policy, event.token_hash,
                )
            case AgentUpdated():
                self._change_agent(event.org, event.agent_id, anchor=event.anchor, description=event.description,
                                   skills=event.skills, policy=event.policy)
            case AgentSuspended():
                self._change_agent(event.org, event.agent_id, status="suspended")
            case AgentReactivated():
                self._change_agent(event.org, event.agent_id, status="active")
            case AgentTokenRotated():
                self._retire_token(event.org, event.agent_id, "rotated", event.token_hash,
                                   event.grace_until or "")
            case AgentTokenRevoked():
                self._retire_token(event.org, event.agent_id, "revoked", "")
            case AgentShadowSet():
                self._change_agent(event.org, event.agent_id, shadow=event.policy)
        self.skip(seq, subject)

    def skip(self, seq: int, subject: str) -> None:
        """Pass over the message at ``seq`` on ``subject`` without applying it (it did not verify or
        apply): the stream's position, and the subject's, still move on."""
        self.last_seq = seq
        self.subject_seq[subject] = seq

    def _close(self, org: str, proposal_id: str, status: ProposalStatus, actor: str, at: str, reason: str) -> None:
        p = self.proposals[(org, proposal_id)]
        self.proposals[(org, proposal_id)] = replace(p, status=status, closed_by=actor, closed_at=at, reason=reason)

    def required_approvals(self, org: str) -> int:
        return self.approvals_required.get(org, 1)

    def _change_agent(self, org: str, agent_id: str, **changes: Any) -> None:
        self.agents[(org, agent_id)] = replace(self.agents[(org, agent_id)], **changes)

    def _retire_token(self, org: str, agent_id: str, why: str, new_hash: str, grace_until: str = "") -> None:
        """Any later rotation or a revocation ends an earlier grace period: at most the token just
        rotated out is still accepted, and a revoked (leaked) token's predecessors are not."""
        old = self.agents[(org, agent_id)]
        retired = tuple((h, cause, "") for h, cause, _ in old.retired_tokens)
        if old.token_hash:
            retired = (*retired, (old.token_hash, why, grace_until))
        self._change_agent(org, agent_id, token_hash=new_hash, retired_tokens=retired)

    def resolve_skill(self, org: str, ref: str) -> SkillVersion | None:
        """The skill version ``ref`` names in ``org`` now (a bare name means the latest)."""
        return _resolve(self.skills, org, ref)

    def resolve_policy(self, org: str, ref: str) -> PolicyVersion | None:
        return _resolve(self.policies, org, ref)


V = TypeVar("V", SkillVersion, PolicyVersion)


def _resolve(
    table: dict[tuple[str, str], list[V]], org: str, ref: str
) -> V | None:
    try:
        name, version = parse_ref(ref)
    except ValueError:
        return None
    versions = table.get((org, name))
    if not versions:
        return None
    if version is None:
        return versions[-1]
    return versions[version - 1] if version <= len(versions) else None
