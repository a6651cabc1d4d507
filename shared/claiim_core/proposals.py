"""Two-person control: widening changes wait as proposals until other admins approve them.

A change that widens what agents may do (publishing or binding skills and policies, registering
an agent, changing an anchor, reactivating an agent, enrolling an admin, changing the approval
rule) is planned as usual, then stored as a :class:`ProposalCreated` holding exactly the planned
events and their hash. Once ``approvals_required`` admins of the org other than the proposer
approve, those stored events are appended as they are. The proposer never counts; an auditor
cannot approve; an expired, rejected or closed proposal cannot be approved. Narrowing changes
(suspend, revoke a token or an admin, rotate a token) never wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from claiim_core.bundle import content_hash
from claiim_core.codes import Code, Refusal
from claiim_core.events import (
    AdminEnrolled,
    AgentReactivated,
    AgentRegistered,
    AgentUpdated,
    ApprovalRuleSet,
    ChangeEvent,
    OrgWebhookSet,
    PolicyPublished,
    ProposalApproved,
    ProposalCreated,
    ProposalExpired,
    ProposalRejected,
    SkillPublished,
    aggregate,
)
from claiim_core.ids import rfc3339
from claiim_core.names import Names
from claiim_core.registry import ProposalState, Registry

DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=7)
WIDENING = (SkillPublished, PolicyPublished, AgentRegistered, AgentUpdated, AgentReactivated, AdminEnrolled,
            ApprovalRuleSet)


class ProposalError(Refusal):
    """The proposal cannot be approved or rejected (the message says why)."""

    default_code = Code.CONFLICT


def widens(events: list[ChangeEvent]) -> bool:
    """True when any event widens what agents may do (or who may approve, or where approvals are
    announced): it needs approval."""
    return any(isinstance(e, WIDENING) or (isinstance(e, OrgWebhookSet) and e.url) for e in events)


def propose(registry: Registry, org: str, proposer: str, events: list[ChangeEvent], summary: list[str], *,
            proposal_id: str, now: datetime, names: Names, ttl: timedelta = DEFAULT_TTL) -> ProposalCreated:
    """Store ``events`` (already planned against ``registry``) as a proposal of ``proposer``."""
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ProposalError(f"a proposal lasts more than 0 and at most {MAX_TTL.days} days", Code.INVALID)
    base: dict[str, int] = {}
    for e in events:
        subject = names.control_subject(e.org, *aggregate(e))
        base.setdefault(subject, registry.subject_seq.get(subject, 0))
    return ProposalCreated(event_id=proposal_id, at=rfc3339(_us(now)), actor=proposer, org=org,
                           proposal_id=proposal_id, summary=tuple(summary), events=tuple(events),
                           change_hash=change_hash(events), base=base,
                           approvals_required=registry.required_approvals(org),
                           expires_at=rfc3339(_us(now + ttl)))


def change_hash(events: list[ChangeEvent] | tuple[ChangeEvent, ...]) -> str:
    return content_hash(list(events))


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def is_expired(p: ProposalState, now: datetime) -> bool:
    return now >= datetime.fromisoformat(p.created.expires_at)


def pending(registry: Registry, org: str, proposal_id: str, now: datetime) -> ProposalState:
    """The open proposal ``proposal_id`` of ``org``; raises :class:`ProposalError` otherwise."""
    p = registry.proposals.get((org, proposal_id))
    if p is None:
        raise ProposalError(f"no proposal {proposal_id!r} in org {org}", Code.NOT_FOUND)
    if p.status != "pending":
        raise ProposalError(f"proposal {proposal_id} is {p.status}" + (f" ({p.reason})" if p.reason else ""))
    if is_expired(p, now):
        raise ProposalError(f"proposal {proposal_id} expired at {p.created.expires_at}")
    return p


@dataclass(frozen=True)
class Approval:
    event: ProposalApproved
    complete: bool
    """True when this approval is the last one needed: the stored change is to be applied."""


def approve(registry: Registry, org: str, proposal_id: str, approver: str, reason: str, now: datetime,
            new_id: Callable[[], str], seen_hash: str = "") -> Approval:
    """Plan an approval. ``seen_hash``, when given, must be the change hash the approver was shown."""
    p = pending(registry, org, proposal_id, now)
    if approver == p.created.actor:
        raise ProposalError(f"{approver} proposed {proposal_id} and cannot approve it: another admin must",
                            Code.FORBIDDEN)
    if any(who == approver for who, _, _ in p.approvals):
        raise ProposalError(f"{approver} has already approved {proposal_id}")
    if seen_hash and seen_hash != p.created.change_hash:
        raise ProposalError(f"proposal {proposal_id} is not the change you reviewed (hash {seen_hash})")
    event = ProposalApproved(event_id=new_id(), at=rfc3339(_us(now)), actor=approver, org=org, proposal_id=proposal_id,
                             change_hash=p.created.change_hash, reason=reason)
    return Approval(event, len(p.approvals) + 1 >= p.created.approvals_required)


def reject(registry: Registry, org: str, proposal_id: str, admin: str, reason: str, now: datetime,
           new_id: Callable[[], str]) -> ProposalRejected:
    """Plan a rejection (by any admin of the org, the proposer included: a withdrawal)."""
    pending(registry, org, proposal_id, now)
    return ProposalRejected(event_id=new_id(), at=rfc3339(_us(now)), actor=admin, org=org, proposal_id=proposal_id,
                            reason=reason)


def expirations(registry: Registry, now: datetime, new_id: Callable[[], str]) -> list[ProposalExpired]:
    """An expiry event for every pending proposal past its expiry time."""
    return [ProposalExpired(event_id=new_id(), at=rfc3339(_us(now)), actor="claiim", org=org, proposal_id=pid)
            for (org, pid), p in sorted(registry.proposals.items()) if p.status == "pending" and is_expired(p, now)]
