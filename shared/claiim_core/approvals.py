"""Approvals: a person decides one risky action before the agent may take it. Pure.

A policy's ``approve`` rule makes the gate answer PENDING: the request is recorded as a decision
with an :class:`~claiim_core.schemas.Approval` (its id is that decision's chron id, and it binds the
request's hash). The approval then lives in JetStream, shared by every replica:

- the PENDING decision and the ALLOW or DENY that ends the approval are on one subject of the
  decisions stream (``<ns>.decision.<org>.<agent>.approval.<id>``); the gate publishes the end
  expecting the PENDING as the subject's last message, so exactly one end is ever recorded;
- a grant, refusal or expiry is a control event (:class:`~claiim_core.events.ApprovalGranted`, ...),
  signed like every control event and applied to the registry of every gate.

Who decides: the agent's anchor (the name recorded in the PENDING decision, enrolled in the org as
an ``anchor`` or ``admin``) for rules with ``approver: anchor``, any admin of the org for
``approver: admins``. Nobody else: not an auditor, another agent's anchor, another org, or the
operator. A grant is good for the request it was given for, once; when the agent collects it the
request is evaluated again, and a DENY then (the agent suspended, its token revoked, a deny rule
added) wins over the grant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Literal

from claiim_core.access import AccessError, Principal
from claiim_core.canonical import canonical_bytes
from claiim_core.codes import Code, Refusal
from claiim_core.conditions import Conditions
from claiim_core.decision import Verdict, deny, evaluate_agent
from claiim_core.document import Rule
from claiim_core.events import ApprovalExpired, ApprovalGranted, ApprovalRefused
from claiim_core.ids import rfc3339
from claiim_core.reasons import reason
from claiim_core.registry import AgentState, ApprovalDecision, Registry
from claiim_core.schemas import Approval, ApprovalView, ApproverKind, DecisionEvent

EXPIRY_GRACE = timedelta(seconds=2)
"""How long after its expiry an undecided approval is recorded as expired (a waiting agent's own
DENY ``approval:expired`` usually ends it first)."""


class ApprovalError(Refusal):
    """The approval cannot be decided (the message says why)."""

    default_code = Code.CONFLICT


def request_hash(org: str, agent_id: str, action: str, target: str, context: Mapping[str, str]) -> str:
    """The hash a grant is bound to: ``sha256:`` and the hex digest of the request's canonical form."""
    body = {"org": org, "agent_id": agent_id, "action": action, "target": target, "context": dict(context)}
    return "sha256:" + hashlib.sha256(canonical_bytes(body)).hexdigest()


def event_hash(event: DecisionEvent) -> str:
    return request_hash(event.org, event.agent_id, event.action, event.target, event.context)


def new_approval(chron_id: str, decided_us: int, ttl_s: int, approver: ApproverKind, org: str, agent_id: str,
                 action: str, target: str, context: Mapping[str, str]) -> Approval:
    """The approval a PENDING decision (``chron_id``, decided at ``decided_us``) asks for."""
    return Approval(id=chron_id, expires_at=rfc3339(decided_us + ttl_s * 1_000_000), approver=approver,
                    request_hash=request_hash(org, agent_id, action, target, context))


def expired(approval: Approval, now: datetime) -> bool:
    return now >= datetime.fromisoformat(approval.expires_at)


def check_decider(principal: Principal, pending: DecisionEvent) -> None:
    """Raise :class:`AccessError` unless ``principal`` may grant or refuse ``pending``'s approval."""
    approval = pending.approval
    assert approval, "not a PENDING decision"
    if principal.org is None:
        raise AccessError("forbidden: approvals are decided by the people of the org, not the operator")
    if principal.org != pending.org:
        raise AccessError(f"forbidden: {principal} cannot act in org {pending.org}")
    if approval.approver == "admins":
        if principal.role != "admin":
            raise AccessError(f"forbidden: an admin of org {pending.org} decides this approval, not the {principal}")
        return
    if principal.name != pending.anchor or principal.role not in ("anchor", "admin"):
        raise AccessError(f"forbidden: only {pending.agent_id}'s anchor {pending.anchor} decides this approval, "
                          f"not the {principal}")


def visible(principal: Principal, pending: DecisionEvent) -> bool:
    """Whether ``principal`` may see ``pending``'s approval: everyone of the org but anchors, who see
    those of the agents they anchor; the operator sees all."""
    if principal.org is None:
        return True
    if principal.org != pending.org:
        return False
    return principal.role != "anchor" or principal.name == pending.anchor


def plan_decision(registry: Registry, principal: Principal, pending: DecisionEvent, final: DecisionEvent | None,
                  grant: bool, why: str, now: datetime, new_id: Callable[[], str],
                  reviewed_hash: str = "") -> ApprovalGranted | ApprovalRefused:
    """The control event recording ``principal``'s grant (or refusal) of ``pending``'s approval."""
    approval = pending.approval
    assert approval, "not a PENDING decision"
    check_decider(principal, pending)
    done = registry.approvals.get((pending.org, approval.id))
    if done is not None:
        raise ApprovalError(f"approval {approval.id} was already {done.status}"
                            + (f" by {done.by}" if done.status != "expired" else ""))
    if final is not None:
        raise ApprovalError(f"approval {approval.id} already ended: {final.outcome} {final.reason}")
    if expired(approval, now):
        raise ApprovalError(f"approval {approval.id} expired at {approval.expires_at}")
    if reviewed_hash and reviewed_hash != approval.request_hash:
        raise ApprovalError(f"the request reviewed ({reviewed_hash}) is not the one waiting "
                            f"({approval.request_hash})")
    if not why.strip():
        raise ApprovalError("say why (--reason): the reason is recorded with the decision", Code.INVALID)
    kind = ApprovalGranted if grant else ApprovalRefused
    return kind(event_id=new_id(), at=rfc3339(int(now.timestamp() * 1_000_000)), actor=principal.name,
                org=pending.org, approval_id=approval.id, agent_id=pending.agent_id,
                request_hash=approval.request_hash, reason=why)


def expiries(registry: Registry, waiting: list[DecisionEvent], now: datetime,
             new_id: Callable[[], str]) -> list[ApprovalExpired]:
    """An expiry for each approval in ``waiting`` (PENDING decisions that nothing ended) past its time
    and the grace, and not decided."""
    out = []
    for pending in waiting:
        approval = pending.approval
        assert approval, "not a PENDING decision"
        if (pending.org, approval.id) in registry.approvals:
            continue
        if now >= datetime.fromisoformat(approval.expires_at) + EXPIRY_GRACE:
            out.append(ApprovalExpired(event_id=new_id(), at=rfc3339(int(now.timestamp() * 1_000_000)),
                                       actor="claiim", org=pending.org, approval_id=approval.id,
                                       agent_id=pending.agent_id))
    return out


def conclude(registry: Registry, agent: AgentState, pending: DecisionEvent, now: datetime,
             conditions: Conditions | None) -> tuple[Verdict, Approval] | None:
    """How the approval of ``pending`` ends now, for its agent (authenticated again): the verdict to
    record and the approval with who decided; None while it still waits.

    A grant gives ALLOW (``approval:granted``) when the request, evaluated again now, is still
    PENDING or ALLOW; a DENY then wins. A refusal is DENY ``approval:refused``, an expiry DENY
    ``approval:expired``."""
    approval = pending.approval
    assert approval, "not a PENDING decision"
    done: ApprovalDecision | None = registry.approvals.get((pending.org, approval.id))
    who = {"org": pending.org, "anchor": agent.anchor, "policy": pending.policy, "skill": pending.skill}
    if done is None:
        if not expired(approval, now):
            return None
        return deny(reason("approval", "expired", f"nobody decided before {approval.expires_at}"), pending.rule,
                    **who), approval
    link = Approval(id=approval.id, expires_at=approval.expires_at, approver=approval.approver,
                    request_hash=approval.request_hash, decided_by=done.by if done.status != "expired" else "",
                    decided_at=done.at, note=done.reason, event_id=done.event_id)
    if done.status == "expired":
        return deny(reason("approval", "expired", f"nobody decided before {approval.expires_at}"), pending.rule,
                    **who), link
    if done.status == "refused":
        return deny(reason("approval", "refused", f"refused by {done.by}: {done.reason}"), pending.rule,
                    **who), link
    if done.request_hash != approval.request_hash:
        return deny(reason("approval", "mismatch", "the grant is for another request"), pending.rule, **who), link
    verdict = evaluate_agent(registry, agent, pending.action, pending.target, context=pending.context, now=now,
                             conditions=conditions)
    if verdict.outcome == "DENY":
        return verdict, link
    granted = Verdict("ALLOW", reason("approval", "granted", f"granted by {done.by}: {done.reason}"),
                      verdict.rule, org=verdict.org, anchor=verdict.anchor, policy=verdict.policy,
                      skill=verdict.skill)
    return granted, link


def view(pending: DecisionEvent, registry: Registry, final: DecisionEvent | None, now: datetime) -> ApprovalView:
    """``pending``'s approval as people decide it."""
    approval = pending.approval
    assert approval, "not a PENDING decision"
    done = registry.approvals.get((pending.org, approval.id))
    status: Literal["pending", "granted", "refused", "expired"] = done.status if done is not None else "pending"
    if done is None and (expired(approval, now) or (final is not None and final.reason.startswith("approval:exp"))):
        status = "expired"
    return ApprovalView(
        approval_id=approval.id, org=pending.org, agent_id=pending.agent_id, anchor=pending.anchor,
        action=pending.action, target=pending.target, context=dict(pending.context), rule=pending.rule,
        policy=pending.policy, skill=pending.skill, approver=approval.approver, request_hash=approval.request_hash,
        requested_at=pending.decided_at, expires_at=approval.expires_at,
        status=status,
        decided_by=done.by if done is not None and done.status != "expired" else "",
        decided_at=done.at if done is not None else "", note=done.reason if done is not None else "",
        final_outcome=final.outcome if final is not None else "",
        final_chron_id=final.chron_id if final is not None else "")


def unsatisfiable(registry: Registry, org: str) -> list[str]:
    """Why some ``approve`` rules of ``org``'s agents can never be granted: an agent's anchor is not
    enrolled in the org as an anchor or admin, or the org has no admin for ``approver: admins``."""
    problems = []
    has_admin = any(a.role == "admin" for (o, _), a in registry.admins.items() if o == org)
    for (o, agent_id), agent in sorted(registry.agents.items()):
        policy = registry.resolve_policy(o, agent.policy) if o == org and agent.policy else None
        if policy is None or not policy.document.approve:
            continue
        approvers = {r.approver if isinstance(r, Rule) and r.approver else "anchor" for r in policy.document.approve}
        person = registry.admins.get((org, agent.anchor))
        if "anchor" in approvers and (person is None or person.role not in ("anchor", "admin")):
            problems.append(f"agent {agent_id}: its anchor {agent.anchor} is not enrolled in org {org} as an anchor "
                            f"or admin, so nobody can grant the approve rules of {policy.label} "
                            f"(`claiim admin enrol {agent.anchor} --role anchor`)")
        if "admins" in approvers and not has_admin:
            problems.append(f"agent {agent_id}: org {org} has no admin to grant the approve rules of {policy.label}")
    return problems
