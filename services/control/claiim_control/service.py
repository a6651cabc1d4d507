"""The admin API over NATS request/reply (``<ns>.admin.*``).

Every request carries an admin token. The service authenticates it against the live registry
(the same projection the gate uses), authorizes it by role and org (:mod:`claiim_core.access`),
plans the change with the pure core and appends the resulting events to the control stream with
``Nats-Expected-Last-Subject-Sequence``: of two conflicting concurrent commands one wins and the
other gets a conflict error. Every event names the admin who caused it (``actor``) and is signed
with the control key to follow exactly that sequence (:func:`claiim_core.eventauth.seal_control`). The reply is
sent once the projection includes the new events, so a decision that follows sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import msgspec
from claiim_core.access import AccessError, Principal, authenticate, scope, visible_orgs
from claiim_core.bundle import BundleError, PlanContext, parse_bundle, plan_bundle
from claiim_core.checkpoint import Signer
from claiim_core.commands import CommandError, plan_admin_command, plan_agent_command, plan_org_create
from claiim_core.eventauth import seal_control
from claiim_core.events import (
    ApprovalRuleSet,
    ChangeEvent,
    ControlEvent,
    ProposalApplied,
    ProposalCreated,
    ProposalFailed,
    aggregate,
)
from claiim_core.explain import explain
from claiim_core.ids import chron_id, rfc3339
from claiim_core.names import Names
from claiim_core.proposals import DEFAULT_TTL, ProposalError, approve, expirations, propose, reject, widens
from claiim_core.registry import ProposalState, Registry
from claiim_core.schemas import (
    AdminCommand,
    AgentCommand,
    AgentCommandReply,
    ApplyReply,
    ApplyRequest,
    OrgCommand,
    ProposalCommand,
    RegistryQuery,
    RegistryQueryReply,
)
from claiim_core.tokens import Kind, format_token
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
from claiim_runtime.follower import RegistryFollower
from msgspec.structs import replace
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError

log = logging.getLogger(__name__)
Reply = ApplyReply | AgentCommandReply | RegistryQueryReply
R = TypeVar("R", ApplyRequest, AgentCommand, AdminCommand, OrgCommand, ProposalCommand, RegistryQuery)
_encode = msgspec.json.Encoder().encode
WRONG_LAST_SEQUENCE = 10071
EXPIRY_SWEEP_S = 30.0
"""How often pending proposals past their expiry are recorded as expired."""


def _new_id() -> str:
    return chron_id(time.time_ns() // 1_000_000, os.urandom(10))


def _new_token(kind: Kind, org: str) -> str:
    return format_token(kind, org, os.urandom(32))


class Refused(Exception):
    """The request is answered with ``ok: false`` and this message."""


class InvalidBundle(Refused):
    def __init__(self, error: BundleError) -> None:
        super().__init__("invalid bundle: " + "; ".join(error.problems))
        self.problems = error.problems


class ControlService:
    def __init__(self, nc: Client, js: JetStreamContext, names: Names, follower: RegistryFollower,
                 token_secret: bytes, operator_token: str, signer: Signer,
                 proposal_ttl: timedelta = DEFAULT_TTL) -> None:
        self._nc = nc
        self._signer = signer
        self._js = js
        self._names = names
        self._follower = follower
        self._secret = token_secret
        self._operator_token = operator_token
        self._ttl = proposal_ttl
        self._lock = asyncio.Lock()
        self._subs: list[Subscription] = []
        self._expiry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        n = self._names

        def command_failed(e: Exception) -> Reply:
            return AgentCommandReply(ok=False, error=str(e))

        def apply_failed(e: Exception) -> Reply:
            return ApplyReply(ok=False, error=str(e), problems=e.problems if isinstance(e, InvalidBundle) else [])

        handlers: list[tuple[str, Callable[[bytes], Awaitable[Reply]], Callable[[Exception], Reply]]] = [
            (n.admin_apply, self.apply, apply_failed),
            (n.admin_agent, self.agent_command, command_failed),
            (n.admin_admins, self.admin_command, command_failed),
            (n.admin_org, self.org_command, command_failed),
            (n.admin_proposal, self.proposal_command, command_failed),
            (n.admin_query, self.query, lambda e: RegistryQueryReply(ok=False, error=str(e))),
        ]
        for subject, handle, failed in handlers:
            cb = _responder(handle, failed)
            self._subs.append(await self._nc.subscribe(subject, queue=n.admin_queue, cb=cb))
        self._expiry = asyncio.create_task(self._expiry_loop())

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry

    @property
    def _registry(self) -> Registry:
        return self._follower.registry

    async def _open(self, data: bytes, kind: type[R]) -> tuple[R, Principal]:
        """Decode a request and authenticate its admin token against an up-to-date registry."""
        try:
            request = msgspec.json.decode(data, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise Refused(f"malformed request: {e}") from e
        await self._follower.wait_caught_up()
        try:
            return request, authenticate(self._registry, self._secret, self._operator_token, request.admin_token)
        except AccessError as e:
            raise Refused(str(e)) from e

    def _context(self, principal: Principal) -> PlanContext:
        return PlanContext(actor=principal.name, now=rfc3339(time.time_ns() // 1000), new_id=_new_id,
                           new_token=_new_token, token_secret=self._secret)

    async def query(self, data: bytes) -> RegistryQueryReply:
        q, principal = await self._open(data, RegistryQuery)
        registry = self._registry
        if q.org or q.op not in ("whoami", "orgs"):
            org = _scope(principal, q.org, write=False)
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
                raise Refused(f"no agent {q.name!r} in org {org}")
            return replace(reply, agents=[agent_info(registry, agent)])
        if q.op == "skills":
            return replace(reply, skills=latest_skills(registry, org))
        if q.op == "skill-versions":
            skills = registry.skills.get((org, q.name))
            if not skills:
                raise Refused(f"no skill {q.name!r} in org {org}")
            return replace(reply, skills=[skill_info(v) for v in skills])
        if q.op == "policies":
            return replace(reply, versions=latest_policies(registry, org))
        if q.op == "policy-versions":
            policies = registry.policies.get((org, q.name))
            if not policies:
                raise Refused(f"no policy {q.name!r} in org {org}")
            return replace(reply, versions=[policy_info(v) for v in policies])
        if q.op == "admins":
            return replace(reply, admins=admin_infos(registry, org),
                           approvals_required=registry.required_approvals(org))
        if q.op == "proposals":
            return replace(reply, proposals=proposal_infos(registry, org, q.name))
        if q.op == "proposal":
            found = registry.proposals.get((org, q.name))
            if found is None:
                raise Refused(f"no proposal {q.name!r} in org {org}")
            return replace(reply, proposals=[proposal_info(found)])
        verdict, steps = explain(registry, org, q.name, q.action, q.target)
        if verdict is None:
            return replace(reply, outcome="DENY", reason="agent:unknown", steps=steps)
        return replace(reply, outcome=verdict.outcome, reason=verdict.reason, rule=verdict.rule, steps=steps)

    async def agent_command(self, data: bytes) -> AgentCommandReply:
        cmd, principal = await self._open(data, AgentCommand)
        org = _scope(principal, cmd.org, write=True)
        async with self._lock:
            await self._follower.wait_caught_up()
            try:
                event, token = plan_agent_command(self._registry, org, cmd, self._context(principal))
            except CommandError as e:
                raise Refused(str(e)) from e
            change = f"{cmd.op} {cmd.agent_id}"
            seq, proposal = await self._commit(principal, org, [event], [change])
        proposal_id, pending = _pending(proposal)
        return AgentCommandReply(ok=True, change=change, token=token, control_seq=seq, proposal_id=proposal_id,
                                 pending=pending)

    async def admin_command(self, data: bytes) -> AgentCommandReply:
        cmd, principal = await self._open(data, AdminCommand)
        org = _scope(principal, cmd.org, write=True)
        async with self._lock:
            await self._follower.wait_caught_up()
            try:
                event, token = plan_admin_command(self._registry, org, cmd, self._context(principal))
            except CommandError as e:
                raise Refused(str(e)) from e
            what = f"enrolled {cmd.role} {cmd.name}" if cmd.op == "enrol" else f"revoked admin {cmd.name}"
            seq, proposal = await self._commit(principal, org, [event], [f"{what} in org {org}"])
        proposal_id, pending = _pending(proposal)
        return AgentCommandReply(ok=True, change=f"{what} in org {org}", token=token, control_seq=seq,
                                 proposal_id=proposal_id, pending=pending)

    async def org_command(self, data: bytes) -> AgentCommandReply:
        cmd, principal = await self._open(data, OrgCommand)
        if cmd.op == "set-approvals":
            org = _scope(principal, cmd.org, write=True)
            async with self._lock:
                await self._follower.wait_caught_up()
                ctx = self._context(principal)
                rule = ApprovalRuleSet(event_id=ctx.new_id(), at=ctx.now, actor=principal.name, org=org,
                                       approvals=cmd.approvals)
                change = f"org {org} needs {cmd.approvals} approval(s) besides the proposer's"
                seq, proposal = await self._commit(principal, org, [rule], [change])
            proposal_id, pending = _pending(proposal)
            return AgentCommandReply(ok=True, change=change, control_seq=seq, proposal_id=proposal_id,
                                     pending=pending)
        if principal.org is not None:
            raise Refused(f"forbidden: only the operator creates orgs, not the {principal}")
        if not cmd.org:
            raise Refused("create needs the org's name")
        async with self._lock:
            await self._follower.wait_caught_up()
            try:
                event = plan_org_create(self._registry, cmd.org, cmd.description, self._context(principal))
            except CommandError as e:
                raise Refused(str(e)) from e
            seq = await self._append([event])
        return AgentCommandReply(ok=True, change=f"created org {cmd.org}", control_seq=seq)

    async def proposal_command(self, data: bytes) -> AgentCommandReply:
        cmd, principal = await self._open(data, ProposalCommand)
        if principal.org is None:
            raise Refused("the operator does not approve proposals: its own changes apply at once (break-glass)")
        org = _scope(principal, cmd.org, write=True)
        async with self._lock:
            await self._follower.wait_caught_up()
            now = datetime.now(UTC)
            try:
                if cmd.op == "reject":
                    rejected = reject(self._registry, org, cmd.proposal_id, principal.name, cmd.reason, now, _new_id)
                    seq = await self._append([rejected])
                    return AgentCommandReply(ok=True, change=f"rejected proposal {cmd.proposal_id}", control_seq=seq)
                approval = approve(self._registry, org, cmd.proposal_id, principal.name, cmd.reason, now, _new_id,
                                   cmd.change_hash)
            except ProposalError as e:
                raise Refused(str(e)) from e
            seq = await self._append([approval.event])
            p = self._registry.proposals[(org, cmd.proposal_id)]
            if not approval.complete:
                more = p.created.approvals_required - len(p.approvals)
                return AgentCommandReply(ok=True, change=f"approved proposal {cmd.proposal_id}; it needs {more} more "
                                         "approval(s)", control_seq=seq, proposal_id=cmd.proposal_id)
            return await self._apply_proposal(p, principal)

    async def _apply_proposal(self, p: ProposalState, principal: Principal) -> AgentCommandReply:
        """Append the stored change as it is, if no aggregate it touches has changed since it was proposed."""
        c = p.created
        ctx = self._context(principal)
        moved = [s for s, seq in c.base.items() if self._registry.subject_seq.get(s, 0) != seq]
        try:
            if moved:
                raise AppendError(f"the registry changed since the proposal ({', '.join(moved)})", 0)
            await self._append(list(c.events), dict(c.base))
        except AppendError as e:
            failed = ProposalFailed(event_id=ctx.new_id(), at=ctx.now, actor=principal.name, org=c.org,
                                    proposal_id=c.proposal_id, reason=str(e))
            seq = await self._append([failed])
            return AgentCommandReply(ok=False, proposal_id=c.proposal_id, control_seq=seq,
                                     error=f"approved, but not applied: {e}; propose the change again")
        applied = ProposalApplied(event_id=ctx.new_id(), at=ctx.now, actor=principal.name, org=c.org,
                                  proposal_id=c.proposal_id)
        seq = await self._append([applied])
        return AgentCommandReply(ok=True, change=f"applied proposal {c.proposal_id}: {'; '.join(c.summary)}",
                                 proposal_id=c.proposal_id, control_seq=seq)

    async def expire_proposals(self) -> int:
        """Record the expiry of every pending proposal past its time; returns how many."""
        async with self._lock:
            await self._follower.wait_caught_up()
            expired = expirations(self._registry, datetime.now(UTC), _new_id)
            if expired:
                await self._append(list(expired))
        return len(expired)

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            try:
                await self.expire_proposals()
            except Exception:
                log.exception("proposal expiry sweep failed")

    async def _commit(self, principal: Principal, org: str, events: list[ChangeEvent],
                      summary: list[str]) -> tuple[int, ProposalCreated | None]:
        """Append ``events`` now, or, when an org admin widens what agents may do, store them as a
        proposal. The operator's changes apply at once (break-glass, recorded with its name)."""
        if principal.org is None or not widens(events):
            return await self._append(list(events)), None
        proposal = propose(self._registry, org, principal.name, events, summary, proposal_id=_new_id(),
                           now=datetime.now(UTC), names=self._names, ttl=self._ttl)
        return await self._append([proposal]), proposal

    async def apply(self, data: bytes) -> ApplyReply:
        request, principal = await self._open(data, ApplyRequest)
        try:
            bundle = parse_bundle(request.bundle)
        except BundleError as e:
            raise InvalidBundle(e) from e
        _scope(principal, bundle.org, write=True)
        async with self._lock:
            await self._follower.wait_caught_up()
            try:
                plan = plan_bundle(self._registry, bundle, self._context(principal))
            except BundleError as e:
                raise InvalidBundle(e) from e
            if request.dry_run or plan.unchanged:
                return ApplyReply(ok=True, changes=plan.changes, control_seq=self._registry.last_seq)
            changes = [c for c in plan.changes if not c.startswith("unchanged")]
            try:
                seq, proposal = await self._commit(principal, bundle.org, plan.events, changes)
            except AppendError as e:
                done = changes[:e.appended]
                tokens = {k: v for k, v in plan.tokens.items() if f"registered agent {k}" in done}
                return ApplyReply(ok=False, changes=done, tokens=tokens, error=f"{e} (applied before: {done})")
            proposal_id, pending = _pending(proposal)
            return ApplyReply(ok=True, changes=plan.changes, tokens=plan.tokens, control_seq=seq,
                              proposal_id=proposal_id, pending=pending)

    async def _append(self, events: list[ControlEvent], expected: dict[str, int] | None = None) -> int:
        """Append ``events`` in order, each expecting its subject's last sequence (as in the
        registry, or in ``expected``); returns the last sequence once the projection includes it.
        Raises :class:`AppendError`."""
        expected = {**self._registry.subject_seq, **(expected or {})}
        seq = self._registry.last_seq
        for n, event in enumerate(events):
            kind, name = aggregate(event)
            subject = self._names.control_subject(event.org, kind, name)
            prev = expected.get(subject, 0)
            headers = {"Nats-Msg-Id": event.event_id, "Nats-Expected-Last-Subject-Sequence": str(prev)}
            try:
                ack = await self._js.publish(subject, seal_control(event, prev, self._signer),
                                             stream=self._names.control_stream, headers=headers)
            except APIError as e:
                why = ("conflict: the registry changed concurrently; re-run the command"
                       if e.err_code == WRONG_LAST_SEQUENCE else f"control stream refused: {e}")
                raise AppendError(why, n) from e
            expected[subject] = seq = ack.seq
        await self._follower.wait_for(seq)
        return seq


def _pending(proposal: ProposalCreated | None) -> tuple[str, str]:
    """The proposal id, and what it needs, when a change waits for approval (else empty)."""
    if proposal is None:
        return "", ""
    n = proposal.approvals_required
    return proposal.proposal_id, (f"{n} approval{'s' if n > 1 else ''} by other admins of org {proposal.org} "
                                  f"before {proposal.expires_at}")


def _scope(principal: Principal, org: str, *, write: bool) -> str:
    try:
        return scope(principal, org, write=write)
    except AccessError as e:
        raise Refused(str(e)) from e


def _responder(handle: Callable[[bytes], Awaitable[Reply]],
               failed: Callable[[Exception], Reply]) -> Callable[[Msg], Awaitable[None]]:
    """A subscription callback that always answers: a refusal or a handler that raises gets
    ``failed(...)``."""

    async def respond(msg: Msg) -> None:
        try:
            reply = await handle(msg.data)
        except Refused as e:
            reply = failed(e)
        except Exception as e:
            log.exception("admin request on %s failed", msg.subject)
            reply = failed(RuntimeError(f"internal error: {type(e).__name__}: {e}"))
        if msg.reply:
            await msg.respond(_encode(reply))

    return respond


class AppendError(Refused):
    """The control stream refused an event; ``appended`` events before it were stored."""

    def __init__(self, message: str, appended: int) -> None:
        super().__init__(message)
        self.appended = appended
