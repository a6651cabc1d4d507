"""The admin client: change and read the registry of an org, and read Chron, over the admin and
Chron request subjects.

Settings come from arguments, else ``CLAIIM_URL``, ``CLAIIM_ADMIN_TOKEN`` and ``CLAIIM_ORG``.
An org admin's token acts in its own org; the operator token must name an org (``org=``) for
everything but creating and listing orgs.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, Literal, TypeVar

import msgspec
from claiim_core.names import Names
from claiim_core.schemas import (
    MAX_TOKEN_GRACE_S,
    AdminCommand,
    AdminInfo,
    AgentCommand,
    AgentCommandReply,
    AgentInfo,
    ApplyReply,
    ApplyRequest,
    ApprovalCommand,
    ApprovalReply,
    ApprovalView,
    CheckpointInfo,
    ChronQuery,
    ChronRecord,
    ChronResult,
    ChronStatus,
    OrgCommand,
    OrgInfo,
    ParkedInfo,
    PolicyVersionInfo,
    ProposalCommand,
    ProposalInfo,
    RegistryOp,
    RegistryQuery,
    RegistryQueryReply,
    SkillVersionInfo,
)
from claiim_core.shadow import ShadowReport, shadow_report
from claiim_core.tracecontext import TRACE_ID

from claiim.errors import InvalidRequestError, ProtocolError, UnauthenticatedError, UnauthorizedError, refusal
from claiim.transport import NatsTransport, Transport, resolve_url

_encode = msgspec.json.Encoder().encode


T = TypeVar("T")


def _decode(data: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProtocolError(f"answer does not decode: {e}") from e


AgentOp = Literal["suspend", "reactivate", "set-anchor", "rotate-token", "revoke-token", "set-shadow"]


class AsyncAdmin:
    def __init__(self, url: str | None = None, admin_token: str | None = None, *, org: str | None = None,
                 timeout: float = 30.0, namespace: str | None = None,
                 transport: Transport | None = None) -> None:
        token = admin_token or os.environ.get("CLAIIM_ADMIN_TOKEN")
        if not token:
            raise UnauthenticatedError("no admin token: pass admin_token or set CLAIIM_ADMIN_TOKEN")
        self._token = token
        self.org = org if org is not None else os.environ.get("CLAIIM_ORG", "")
        self.url = resolve_url(url)
        self.names = Names(namespace or os.environ.get("CLAIIM_NAMESPACE") or "claiim")
        self.timeout = timeout
        self._transport = transport or NatsTransport(self.url, name="claiim-admin", user="admin", token=token)

    async def _call(self, subject: str, request: Any, kind: type[T]) -> T:
        try:
            data = await self._transport.request(subject, _encode(request), self.timeout)
        except UnauthorizedError as e:
            raise UnauthenticatedError(f"unauthorized: not a valid admin token ({e})") from None
        reply = _decode(data, kind)
        error = getattr(reply, "error", None)
        if error or getattr(reply, "ok", True) is False:
            raise refusal(getattr(reply, "code", ""), error or "refused", getattr(reply, "problems", None))
        return reply

    # -- changes

    async def apply(self, bundle: dict[str, Any], dry_run: bool = False) -> ApplyReply:
        """Apply a bundle; raises :class:`AdminError` with the server's reason when refused."""
        request = ApplyRequest(admin_token=self._token, bundle=bundle, dry_run=dry_run)
        return await self._call(self.names.admin_apply, request, ApplyReply)

    async def agent_command(self, op: AgentOp, agent_id: str, reason: str = "",
                            anchor: str = "", policy: str = "", grace: int = 0) -> AgentCommandReply:
        """Run one agent lifecycle command; rotate-token's reply carries the new token (shown once)."""
        cmd = AgentCommand(admin_token=self._token, op=op, agent_id=agent_id, org=self.org, reason=reason,
                           anchor=anchor, policy=policy, grace=grace)
        return await self._call(self.names.admin_agent, cmd, AgentCommandReply)

    async def suspend(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        """The kill switch: every later check of the agent is denied, in every gate replica."""
        return await self.agent_command("suspend", agent_id, reason)

    async def reactivate(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return await self.agent_command("reactivate", agent_id, reason)

    async def set_anchor(self, agent_id: str, anchor: str, reason: str = "") -> AgentCommandReply:
        """Name another accountable human for the agent."""
        return await self.agent_command("set-anchor", agent_id, reason, anchor=anchor)

    async def rotate_token(self, agent_id: str, grace: timedelta | float = 0) -> str:
        """Issue a new token. The old one is denied as rotated out from now on or, with ``grace`` (a
        timedelta or seconds, at most 7 days), from the end of that grace period: time to roll the new
        token out with no outage. A later rotation or a revocation ends the grace at once."""
        seconds = grace.total_seconds() if isinstance(grace, timedelta) else float(grace)
        if not 0 <= seconds <= MAX_TOKEN_GRACE_S:
            raise InvalidRequestError(f"a grace period is 0 to {MAX_TOKEN_GRACE_S // 86400} days, not {seconds}s")
        token = (await self.agent_command("rotate-token", agent_id, grace=math.ceil(seconds))).token
        if token is None:
            raise ProtocolError("rotate-token answered without a token")
        return token

    async def revoke_token(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return await self.agent_command("revoke-token", agent_id, reason)

    async def set_shadow(self, agent_id: str, policy: str, reason: str = "") -> AgentCommandReply:
        """Evaluate ``policy`` (``NAME-vN``; a bare name pins its newest version) beside the agent's bound
        policy, log-only: every decision records what it would have decided, no answer changes. An empty
        ``policy`` removes the candidate. Needs no second admin: it changes no outcome."""
        return await self.agent_command("set-shadow", agent_id, reason, policy=policy)

    async def shadow_report(self, agent_id: str, since: str | None = None, until: str | None = None) -> ShadowReport:
        """Of the agent's decisions in the window (all of them by default), which its log-only candidates
        evaluated and which they would have decided otherwise, newest first."""
        records: list[ChronRecord] = []
        before = None
        while True:
            page = await self.chron_list(agent_id=agent_id, kind="decision", since=since, until=until,
                                         before=before, limit=1000)
            records += page
            if len(page) < 1000:
                return shadow_report(records)
            before = page[-1].leaf_index

    async def admin_command(self, op: Literal["enrol", "revoke"], name: str,
                            role: Literal["admin", "auditor", "anchor"] = "admin",
                            reason: str = "") -> AgentCommandReply:
        """Enrol (the reply carries the token, shown once; with ``proposal_id`` set it is valid once
        the proposal is applied) or revoke an admin of the org."""
        cmd = AdminCommand(admin_token=self._token, op=op, name=name, org=self.org, role=role, reason=reason)
        return await self._call(self.names.admin_admins, cmd, AgentCommandReply)

    async def enrol_admin(self, name: str, role: Literal["admin", "auditor", "anchor"] = "admin") -> str:
        """Enrol an admin, auditor or anchor of the org; returns its token (shown once). An anchor decides
        the approvals of the agents whose anchor is ``name`` and reads their records, nothing else."""
        token = (await self.admin_command("enrol", name, role)).token
        if token is None:
            raise ProtocolError("enrol answered without a token")
        return token

    async def revoke_admin(self, name: str, reason: str = "") -> AgentCommandReply:
        return await self.admin_command("revoke", name, reason=reason)

    async def set_approvals(self, approvals: int) -> AgentCommandReply:
        """How many admins besides the proposer approve a widening change (itself a proposal for an admin)."""
        cmd = OrgCommand(admin_token=self._token, op="set-approvals", org=self.org, approvals=approvals)
        return await self._call(self.names.admin_org, cmd, AgentCommandReply)

    async def set_webhook(self, url: str) -> AgentCommandReply:
        """Announce every approval that waits in the org with a JSON POST to ``url`` (empty: stop); setting one
        is a proposal for an admin, like every widening change."""
        cmd = OrgCommand(admin_token=self._token, op="set-webhook", org=self.org, webhook=url)
        return await self._call(self.names.admin_org, cmd, AgentCommandReply)

    # -- approvals of single actions

    async def _approval(self, op: Literal["list", "show", "grant", "refuse"], approval_id: str = "",
                        **fields: Any) -> ApprovalReply:
        cmd = ApprovalCommand(admin_token=self._token, op=op, org=self.org, approval_id=approval_id, **fields)
        return await self._call(self.names.admin_approval, cmd, ApprovalReply)

    async def approvals(self, *, agent_id: str = "", closed: bool = False) -> list[ApprovalView]:
        """The approvals waiting for a decision that this principal can see (an anchor: those of its
        agents), newest first; with ``closed``, the decided and expired ones too."""
        return (await self._approval("list", agent_id=agent_id, closed=closed)).approvals

    async def approval(self, approval_id: str) -> ApprovalView:
        """One approval: the request, its rule and policy version, where it stands."""
        return (await self._approval("show", approval_id)).approvals[0]

    async def grant(self, approval_id: str, reason: str, request_hash: str = "") -> ApprovalReply:
        """Grant one waiting approval: the agent's wait gets ALLOW for exactly that request, once. With
        ``request_hash`` (from :meth:`approval`), only if it is the request reviewed."""
        return await self._approval("grant", approval_id, reason=reason, request_hash=request_hash)

    async def refuse(self, approval_id: str, reason: str, request_hash: str = "") -> ApprovalReply:
        """Refuse one waiting approval: the agent's wait gets DENY ``approval:refused`` with ``reason``."""
        return await self._approval("refuse", approval_id, reason=reason, request_hash=request_hash)

    async def approve(self, proposal_id: str, reason: str = "", change_hash: str = "") -> AgentCommandReply:
        """Approve a proposal of another admin; the last approval needed applies the stored change.

        With ``change_hash`` (from :meth:`proposal`), the approval holds only for that exact change.
        """
        cmd = ProposalCommand(admin_token=self._token, op="approve", proposal_id=proposal_id, org=self.org,
                              reason=reason, change_hash=change_hash)
        return await self._call(self.names.admin_proposal, cmd, AgentCommandReply)

    async def reject(self, proposal_id: str, reason: str = "") -> AgentCommandReply:
        cmd = ProposalCommand(admin_token=self._token, op="reject", proposal_id=proposal_id, org=self.org,
                              reason=reason)
        return await self._call(self.names.admin_proposal, cmd, AgentCommandReply)

    async def create_org(self, name: str, description: str = "") -> AgentCommandReply:
        """Create an org (the operator token only)."""
        cmd = OrgCommand(admin_token=self._token, op="create", org=name, description=description)
        return await self._call(self.names.admin_org, cmd, AgentCommandReply)

    # -- reads

    async def registry(self, op: RegistryOp, name: str = "", action: str = "", target: str = "",
                       org: str | None = None, context: dict[str, str] | None = None) -> RegistryQueryReply:
        query = RegistryQuery(admin_token=self._token, op=op, org=self.org if org is None else org, name=name,
                              action=action, target=target, context=context or {})
        return await self._call(self.names.admin_query, query, RegistryQueryReply)

    async def whoami(self) -> RegistryQueryReply:
        """Who the token belongs to (``principal``, ``role``, ``org``) and its org."""
        return await self.registry("whoami", org="")

    async def orgs(self) -> list[OrgInfo]:
        """The orgs this token sees: its own, or every org for the operator."""
        return (await self.registry("orgs", org="")).orgs

    async def agents(self) -> list[AgentInfo]:
        return (await self.registry("agents")).agents

    async def agent(self, agent_id: str) -> AgentInfo:
        return (await self.registry("agent", agent_id)).agents[0]

    async def skills(self) -> list[SkillVersionInfo]:
        """The latest version of each skill."""
        return (await self.registry("skills")).skills

    async def skill_versions(self, name: str) -> list[SkillVersionInfo]:
        return (await self.registry("skill-versions", name)).skills

    async def policies(self) -> list[PolicyVersionInfo]:
        """The latest version of each policy."""
        return (await self.registry("policies")).versions

    async def policy_versions(self, name: str) -> list[PolicyVersionInfo]:
        return (await self.registry("policy-versions", name)).versions

    async def admins(self) -> list[AdminInfo]:
        return (await self.registry("admins")).admins

    async def proposals(self, status: str = "") -> list[ProposalInfo]:
        """The org's proposals, newest first; ``status`` pending, applied, rejected, expired or failed."""
        return (await self.registry("proposals", status)).proposals

    async def proposal(self, proposal_id: str) -> ProposalInfo:
        """One proposal with the exact change it holds."""
        return (await self.registry("proposal", proposal_id)).proposals[0]

    async def explain(self, agent_id: str, action: str, target: str = "",
                      context: dict[str, str] | None = None) -> RegistryQueryReply:
        """What the gate would decide now for a check with ``context``, with the path through skill,
        policy and conditions; not recorded."""
        return await self.registry("explain", agent_id, action, target, context=context)

    async def chron_list(self, *, agent_id: str | None = None, anchor: str | None = None,
                         action: str | None = None, outcome: Literal["ALLOW", "DENY", "PENDING"] | None = None,
                         since: str | None = None, until: str | None = None,
                         kind: Literal["decision", "control"] | None = None, trace_id: str | None = None,
                         approval_id: str | None = None, before: int | None = None, after: int | None = None,
                         limit: int = 50) -> list[ChronRecord]:
        """Chron records of the org, newest first by leaf index (the operator without an org sees every org).

        ``action`` is exact, or a prefix when it ends with ``*`` (``deploy:*``). ``since`` (inclusive)
        and ``until`` (exclusive) are ISO 8601 times of occurrence; ``trace_id`` (32 lowercase hex digits)
        finds the decisions of one W3C trace, ``approval_id`` every record of one approval. Page with leaf
        indexes:
        ``before=records[-1].leaf_index`` gives the next older page, ``after=records[0].leaf_index``
        the next newer one.
        """
        if trace_id is not None and not TRACE_ID.match(trace_id):
            raise InvalidRequestError(f"trace id {trace_id!r}: a W3C trace id is 32 lowercase hex digits")
        return await self._chron(ChronQuery(admin_token=self._token, op="list", org=self.org, agent_id=agent_id,
                                            anchor=anchor, action=action, outcome=outcome, since=since, until=until,
                                            kind=kind, trace_id=trace_id, approval_id=approval_id, before=before,
                                            after=after, limit=limit))

    async def chron_show(self, chron_id: str) -> ChronRecord | None:
        records = await self._chron(ChronQuery(admin_token=self._token, op="show", org=self.org,
                                               chron_id=chron_id))
        return records[0] if records else None

    async def _chron(self, query: ChronQuery) -> list[ChronRecord]:
        return (await self._call(self.names.chron_query, query, ChronResult)).records

    async def chron_checkpoints(self, limit: int = 20) -> list[CheckpointInfo]:
        """Signed checkpoints, newest first."""
        query = ChronQuery(admin_token=self._token, op="checkpoints", limit=limit)
        return (await self._call(self.names.chron_query, query, ChronResult)).checkpoints

    async def chron_status(self) -> ChronStatus:
        """How far Chron has got: leaves stored, the newest checkpoint, messages still to store."""
        query = ChronQuery(admin_token=self._token, op="status")
        status = (await self._call(self.names.chron_query, query, ChronResult)).status
        if status is None:
            raise ProtocolError("status answered without a status")
        return status

    async def chron_parked(self, *, unacknowledged: bool = True, limit: int = 100) -> list[ParkedInfo]:
        """Messages Chron parked instead of storing (operator only), newest first."""
        query = ChronQuery(admin_token=self._token, op="parked", unacknowledged=unacknowledged, limit=limit)
        return (await self._call(self.names.chron_query, query, ChronResult)).parked

    async def chron_acknowledge_parked(self, ids: list[int], reason: str) -> list[int]:
        """Acknowledge parked messages (all not yet acknowledged when ``ids`` is empty); the
        acknowledgement is recorded with the reason. Returns the ids acknowledged now."""
        query = ChronQuery(admin_token=self._token, op="ack-parked", ids=ids, reason=reason)
        return (await self._call(self.names.chron_query, query, ChronResult)).acknowledged

    async def chron_prove(self, chron_id: str) -> dict[str, Any]:
        """A self-contained inclusion proof of the record (see :mod:`claiim_core.proofs`)."""
        query = ChronQuery(admin_token=self._token, op="prove", org=self.org, chron_id=chron_id)
        result = await self._call(self.names.chron_query, query, ChronResult)
        if result.inclusion is None:
            raise ProtocolError("prove answered without a proof")
        return result.inclusion

    async def chron_consistency(self, first: int, second: int = 0) -> dict[str, Any]:
        """A proof that the checkpoint of ``second`` leaves (0: the newest) extends that of ``first``."""
        query = ChronQuery(admin_token=self._token, op="consistency", first=first, second=second)
        result = await self._call(self.names.chron_query, query, ChronResult)
        if result.consistency is None:
            raise ProtocolError("consistency answered without a proof")
        return result.consistency

    async def close(self) -> None:
        await self._transport.close()


class Admin:
    """Synchronous wrapper around :class:`AsyncAdmin` (one call at a time); same methods."""

    def __init__(self, url: str | None = None, admin_token: str | None = None, *, org: str | None = None,
                 timeout: float = 30.0, namespace: str | None = None) -> None:
        self._admin = AsyncAdmin(url, admin_token, org=org, timeout=timeout, namespace=namespace)
        self._loop = asyncio.new_event_loop()

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(call)

    def apply(self, bundle: dict[str, Any], dry_run: bool = False) -> ApplyReply:
        return self._run(self._admin.apply(bundle, dry_run))

    def suspend(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return self._run(self._admin.suspend(agent_id, reason))

    def reactivate(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return self._run(self._admin.reactivate(agent_id, reason))

    def set_anchor(self, agent_id: str, anchor: str, reason: str = "") -> AgentCommandReply:
        return self._run(self._admin.set_anchor(agent_id, anchor, reason))

    def rotate_token(self, agent_id: str, grace: timedelta | float = 0) -> str:
        return self._run(self._admin.rotate_token(agent_id, grace))

    def revoke_token(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return self._run(self._admin.revoke_token(agent_id, reason))

    def enrol_admin(self, name: str, role: Literal["admin", "auditor", "anchor"] = "admin") -> str:
        return self._run(self._admin.enrol_admin(name, role))

    def set_webhook(self, url: str) -> AgentCommandReply:
        return self._run(self._admin.set_webhook(url))

    def approvals(self, *, agent_id: str = "", closed: bool = False) -> list[ApprovalView]:
        return self._run(self._admin.approvals(agent_id=agent_id, closed=closed))

    def approval(self, approval_id: str) -> ApprovalView:
        return self._run(self._admin.approval(approval_id))

    def grant(self, approval_id: str, reason: str, request_hash: str = "") -> ApprovalReply:
        return self._run(self._admin.grant(approval_id, reason, request_hash))

    def refuse(self, approval_id: str, reason: str, request_hash: str = "") -> ApprovalReply:
        return self._run(self._admin.refuse(approval_id, reason, request_hash))

    def revoke_admin(self, name: str, reason: str = "") -> AgentCommandReply:
        return self._run(self._admin.revoke_admin(name, reason))

    def create_org(self, name: str, description: str = "") -> AgentCommandReply:
        return self._run(self._admin.create_org(name, description))

    def set_approvals(self, approvals: int) -> AgentCommandReply:
        return self._run(self._admin.set_approvals(approvals))

    def approve(self, proposal_id: str, reason: str = "", change_hash: str = "") -> AgentCommandReply:
        return self._run(self._admin.approve(proposal_id, reason, change_hash))

    def reject(self, proposal_id: str, reason: str = "") -> AgentCommandReply:
        return self._run(self._admin.reject(proposal_id, reason))

    def proposals(self, status: str = "") -> list[ProposalInfo]:
        return self._run(self._admin.proposals(status))

    def proposal(self, proposal_id: str) -> ProposalInfo:
        return self._run(self._admin.proposal(proposal_id))

    def whoami(self) -> RegistryQueryReply:
        return self._run(self._admin.whoami())

    def orgs(self) -> list[OrgInfo]:
        return self._run(self._admin.orgs())

    def agents(self) -> list[AgentInfo]:
        return self._run(self._admin.agents())

    def agent(self, agent_id: str) -> AgentInfo:
        return self._run(self._admin.agent(agent_id))

    def skills(self) -> list[SkillVersionInfo]:
        return self._run(self._admin.skills())

    def skill_versions(self, name: str) -> list[SkillVersionInfo]:
        return self._run(self._admin.skill_versions(name))

    def policies(self) -> list[PolicyVersionInfo]:
        return self._run(self._admin.policies())

    def policy_versions(self, name: str) -> list[PolicyVersionInfo]:
        return self._run(self._admin.policy_versions(name))

    def admins(self) -> list[AdminInfo]:
        return self._run(self._admin.admins())

    def set_shadow(self, agent_id: str, policy: str, reason: str = "") -> AgentCommandReply:
        return self._run(self._admin.set_shadow(agent_id, policy, reason))

    def shadow_report(self, agent_id: str, since: str | None = None, until: str | None = None) -> ShadowReport:
        return self._run(self._admin.shadow_report(agent_id, since, until))

    def explain(self, agent_id: str, action: str, target: str = "",
                context: dict[str, str] | None = None) -> RegistryQueryReply:
        return self._run(self._admin.explain(agent_id, action, target, context))

    def chron_list(self, **filters: Any) -> list[ChronRecord]:
        return self._run(self._admin.chron_list(**filters))

    def chron_show(self, chron_id: str) -> ChronRecord | None:
        return self._run(self._admin.chron_show(chron_id))

    def chron_checkpoints(self, limit: int = 20) -> list[CheckpointInfo]:
        return self._run(self._admin.chron_checkpoints(limit))

    def chron_parked(self, *, unacknowledged: bool = True, limit: int = 100) -> list[ParkedInfo]:
        return self._run(self._admin.chron_parked(unacknowledged=unacknowledged, limit=limit))

    def chron_acknowledge_parked(self, ids: list[int], reason: str) -> list[int]:
        return self._run(self._admin.chron_acknowledge_parked(ids, reason))

    def chron_status(self) -> ChronStatus:
        return self._run(self._admin.chron_status())

    def chron_prove(self, chron_id: str) -> dict[str, Any]:
        return self._run(self._admin.chron_prove(chron_id))

    def chron_consistency(self, first: int, second: int = 0) -> dict[str, Any]:
        return self._run(self._admin.chron_consistency(first, second))

    def close(self) -> None:
        self._run(self._admin.close())
        self._loop.close()
