"""One handler per admin command: plan it with the pure core inside a unit of work
(:mod:`claiim_control.unit`) and say what it did. A handler raises a
:class:`~claiim_core.codes.Refusal` to refuse; :mod:`claiim_control.service` turns it into the
reply's ``code`` and ``error``."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from claiim_core.access import Principal, scope, visible_orgs
from claiim_core.approvals import unsatisfiable
from claiim_core.bundle import parse_bundle, plan_bundle
from claiim_core.codes import Code, Refusal
from claiim_core.commands import plan_admin_command, plan_agent_command, plan_org_create
from claiim_core.events import (
    AgentShadowSet,
    AgentTokenRotated,
    ApprovalRuleSet,
    ChangeEvent,
    OrgWebhookSet,
    ProposalApplied,
    ProposalCreated,
    ProposalFailed,
)
from claiim_core.explain import explain
from claiim_core.proposals import approve, reject
from claiim_core.registry import ProposalState, Registry
from claiim_core.schemas import (
    AdminCommand,
    AgentCommand,
    AgentCommandReply,
    ApplyReply,
    ApplyRequest,
    ApprovalReply,
    OrgCommand,
    ProposalCommand,
    RegistryQuery,
    RegistryQueryReply,
)
from claiim_core.views import (
    admin_infos,
    agent_info,
    agent_infos,
    latest_policies,
    latest_skills,
    org_info,
    policy_info,
    proposal_info,
    proposal_infos,
    skill_info,
)
from msgspec.structs import replace

from claiim_control.unit import AppendError, ControlStream, Work

Reply = ApplyReply | AgentCommandReply | RegistryQueryReply | ApprovalReply
Handler = Callable[[Any, Principal, ControlStream], Awaitable[Reply]]


async def apply(request: ApplyRequest, principal: Principal, stream: ControlStream) -> ApplyReply:
    bundle = parse_bundle(request.bundle)
    scope(principal, bundle.org, write=True)
    async with stream.begin(principal) as work:
        plan = plan_bundle(work.registry, bundle, work.context)
        warnings = _warnings(work.registry, bundle.org, plan.events)
        if request.dry_run:
            proposes = not plan.unchanged and work.proposes(plan.events)
            return ApplyReply(ok=True, changed=plan.changes, changes=[c.would() for c in plan.changes],
                              control_seq=work.registry.last_seq, warnings=warnings, dry_run=True,
                              would_propose=proposes,
                              approvals_required=work.registry.required_approvals(bundle.org) if proposes else 0)
        if plan.unchanged:
            return ApplyReply(ok=True, changed=plan.changes, changes=[str(c) for c in plan.changes],
                              control_seq=work.registry.last_seq, warnings=warnings)
        changed = [c for c in plan.changes if c.op != "unchanged"]
        try:
            seq, proposal = await work.commit(bundle.org, plan.events, [str(c) for c in changed])
        except AppendError as e:
            done = changed[:e.appended]
            tokens = {c.name: plan.tokens[c.name] for c in done if c.kind == "agent" and c.op == "registered"}
            return ApplyReply(ok=False, code=e.code, changed=done, changes=[str(c) for c in done], tokens=tokens,
                              error=f"{e} (applied before: {[str(c) for c in done]})")
        proposal_id, pending = _pending(proposal)
        return ApplyReply(ok=True, changed=plan.changes, changes=[str(c) for c in plan.changes], tokens=plan.tokens,
                          control_seq=seq, proposal_id=proposal_id, pending=pending, warnings=warnings)


def _warnings(registry: Registry, org: str, events: list[ChangeEvent]) -> list[str]:
    """What would be wrong with ``org`` once ``events`` are applied: approve rules nobody can grant."""
    projected = copy.deepcopy(registry)
    for event in events:
        projected.apply(projected.last_seq, "", event)
    return unsatisfiable(projected, org)


def check_webhook(url: str) -> None:
    """Refuse a webhook that is not an http(s) URL with a host (empty: remove it)."""
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refusal(f"a webhook is an http:// or https:// URL with a host, not {url!r}", Code.INVALID)


async def agent_command(cmd: AgentCommand, principal: Principal, stream: ControlStream) -> AgentCommandReply:
    org = scope(principal, cmd.org, write=True)
    async with stream.begin(principal) as work:
        event, token = plan_agent_command(work.registry, org, cmd, work.context)
        change = f"{cmd.op} {cmd.agent_id}"
        if isinstance(event, AgentShadowSet):
            change = (f"{cmd.agent_id}: {event.policy} evaluated log-only beside its bound policy" if event.policy
                      else f"{cmd.agent_id}: log-only candidate removed")
        elif isinstance(event, AgentTokenRotated) and event.grace_until:
            change = f"{change}: the old token stays valid until {event.grace_until}"
        return await _committed(work, org, [event], change, token)


async def admin_command(cmd: AdminCommand, principal: Principal, stream: ControlStream) -> AgentCommandReply:
    org = scope(principal, cmd.org, write=True)
    async with stream.begin(principal) as work:
        event, token = plan_admin_command(work.registry, org, cmd, work.context)
        what = f"enrolled {cmd.role} {cmd.name}" if cmd.op == "enrol" else f"revoked admin {cmd.name}"
        return await _committed(work, org, [event], f"{what} in org {org}", token)


async def org_command(cmd: OrgCommand, principal: Principal, stream: ControlStream) -> AgentCommandReply:
    if cmd.op == "set-webhook":
        org = scope(principal, cmd.org, write=True)
        check_webhook(cmd.webhook)
        async with stream.begin(principal) as work:
            if work.registry.webhooks.get(org, "") == cmd.webhook:
                raise Refusal(f"org {org}'s webhook is already {'that' if cmd.webhook else 'unset'}", Code.CONFLICT)
            ctx = work.context
            hook = OrgWebhookSet(event_id=ctx.new_id(), at=ctx.now, actor=principal.name, org=org, url=cmd.webhook)
            return await _committed(work, org, [hook], f"org {org} announces waiting approvals to {cmd.webhook}"
                                    if cmd.webhook else f"org {org} announces waiting approvals nowhere")
    if cmd.op == "set-approvals":
        org = scope(principal, cmd.org, write=True)
        async with stream.begin(principal) as work:
            ctx = work.context
            rule = ApprovalRuleSet(event_id=ctx.new_id(), at=ctx.now, actor=principal.name, org=org,
                                   approvals=cmd.approvals)
            return await _committed(work, org, [rule], f"org {org} needs {cmd.approvals} approval(s) besides the "
                                    "proposer's")
    if principal.org is not None:
        raise Refusal(f"forbidden: only the operator creates orgs, not the {principal}", Code.FORBIDDEN)
    if not cmd.org:
        raise Refusal("create needs the org's name", Code.INVALID)
    async with stream.begin(principal) as work:
        seq = await work.append([plan_org_create(work.registry, cmd.org, cmd.description, work.context)])
    return AgentCommandReply(ok=True, change=f"created org {cmd.org}", control_seq=seq)


async def proposal_command(cmd: ProposalCommand, principal: Principal, stream: ControlStream) -> AgentCommandReply:
    if principal.org is None:
        raise Refusal("the operator does not approve proposals: its own changes apply at once (break-glass)",
                      Code.FORBIDDEN)
    org = scope(principal, cmd.org, write=True)
    async with stream.begin(principal) as work:
        now = datetime.now(UTC)
        new_id = work.context.new_id
        if cmd.op == "reject":
            seq = await work.append([reject(work.registry, org, cmd.proposal_id, principal.name, cmd.reason, now,
                                             new_id)])
            return AgentCommandReply(ok=True, change=f"rejected proposal {cmd.proposal_id}", control_seq=seq)
        approval = approve(work.registry, org, cmd.proposal_id, principal.name, cmd.reason, now, new_id,
                           cmd.change_hash)
        seq = await work.append([approval.event])
        p = work.registry.proposals[(org, cmd.proposal_id)]
        if not approval.complete:
            more = p.created.approvals_required - len(p.approvals)
            return AgentCommandReply(ok=True, change=f"approved proposal {cmd.proposal_id}; it needs {more} more "
                                     "approval(s)", control_seq=seq, proposal_id=cmd.proposal_id)
        return await _apply_proposal(work, p)


async def query(q: RegistryQuery, principal: Principal, stream: ControlStream) -> RegistryQueryReply:
    registry = stream.registry
    org = scope(principal, q.org, write=False) if q.org or q.op not in ("whoami", "orgs") else ""
    reply = RegistryQueryReply(ok=True, principal=str(principal), name=principal.name, role=principal.role,
                               org=principal.org or "", control_seq=registry.last_seq)
    if q.op in ("whoami", "orgs"):
        orgs = [org_info(registry, o) for o in visible_orgs(principal, registry) if not q.org or o == q.org]
        return replace(reply, orgs=orgs)
    reply = replace(reply, org=org)
    if q.op == "agents":
        return replace(reply, agents=agent_infos(registry, org))
    if q.op == "agent":
        agent = registry.agents.get((org, q.name))
        if agent is None:
            raise Refusal(f"no agent {q.name!r} in org {org}", Code.NOT_FOUND)
        return replace(reply, agents=[agent_info(registry, agent)])
    if q.op == "skills":
        return replace(reply, skills=latest_skills(registry, org))
    if q.op == "skill-versions":
        skills = registry.skills.get((org, q.name))
        if not skills:
            raise Refusal(f"no skill {q.name!r} in org {org}", Code.NOT_FOUND)
        return replace(reply, skills=[skill_info(v) for v in skills])
    if q.op == "policies":
        return replace(reply, versions=latest_policies(registry, org))
    if q.op == "policy-versions":
        policies = registry.policies.get((org, q.name))
        if not policies:
            raise Refusal(f"no policy {q.name!r} in org {org}", Code.NOT_FOUND)
        return replace(reply, versions=[policy_info(v) for v in policies])
    if q.op == "admins":
        return replace(reply, admins=admin_infos(registry, org), approvals_required=registry.required_approvals(org))
    if q.op == "proposals":
        return replace(reply, proposals=proposal_infos(registry, org, q.name))
    if q.op == "proposal":
        found = registry.proposals.get((org, q.name))
        if found is None:
            raise Refusal(f"no proposal {q.name!r} in org {org}", Code.NOT_FOUND)
        return replace(reply, proposals=[proposal_info(found)])
    verdict, steps = explain(registry, org, q.name, q.action, q.target, context=q.context, now=datetime.now(UTC),
                             conditions=stream.conditions)
    if verdict is None:
        return replace(reply, outcome="DENY", reason="agent:unknown", steps=steps)
    return replace(reply, outcome=verdict.outcome, reason=verdict.reason, rule=verdict.rule, steps=steps)


async def _committed(work: Work, org: str, events: list[ChangeEvent], change: str,
                     token: str | None = None) -> AgentCommandReply:
    seq, proposal = await work.commit(org, events, [change])
    proposal_id, pending = _pending(proposal)
    return AgentCommandReply(ok=True, change=change, token=token, control_seq=seq, proposal_id=proposal_id,
                             pending=pending)


async def _apply_proposal(work: Work, p: ProposalState) -> AgentCommandReply:
    """Append the stored change as it is, if no aggregate it touches has changed since it was proposed."""
    c = p.created
    ctx = work.context
    moved = [s for s, seq in c.base.items() if work.registry.subject_seq.get(s, 0) != seq]
    try:
        if moved:
            raise AppendError(f"the registry changed since the proposal ({', '.join(moved)})", Code.CONFLICT, 0)
        await work.append(list(c.events), dict(c.base))
    except AppendError as e:
        failed = ProposalFailed(event_id=ctx.new_id(), at=ctx.now, actor=work.principal.name, org=c.org,
                                proposal_id=c.proposal_id, reason=str(e))
        seq = await work.append([failed])
        return AgentCommandReply(ok=False, code=e.code, proposal_id=c.proposal_id, control_seq=seq,
                                 error=f"approved, but not applied: {e}; propose the change again")
    applied = ProposalApplied(event_id=ctx.new_id(), at=ctx.now, actor=work.principal.name, org=c.org,
                              proposal_id=c.proposal_id)
    seq = await work.append([applied])
    return AgentCommandReply(ok=True, change=f"applied proposal {c.proposal_id}: {'; '.join(c.summary)}",
                             proposal_id=c.proposal_id, control_seq=seq)


def _pending(proposal: ProposalCreated | None) -> tuple[str, str]:
    """The proposal id, and what it needs, when a change waits for approval (else empty)."""
    if proposal is None:
        return "", ""
    n = proposal.approvals_required
    return proposal.proposal_id, (f"{n} approval{'s' if n > 1 else ''} by other admins of org {proposal.org} "
                                  f"before {proposal.expires_at}")
