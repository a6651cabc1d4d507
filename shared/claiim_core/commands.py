"""Single commands: agent lifecycle, admin enrolment, org creation.

Each command is checked against the registry (in the org it acts in) and becomes exactly one
control event. Authorization happens before: :mod:`claiim_core.access`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from claiim_core.access import OPERATOR
from claiim_core.bundle import PlanContext
from claiim_core.codes import Code, Refusal
from claiim_core.events import (
    AdminEnrolled,
    AdminRevoked,
    AgentLifecycle,
    AgentReactivated,
    AgentShadowSet,
    AgentSuspended,
    AgentTokenRevoked,
    AgentTokenRotated,
    AgentUpdated,
    OrgCreated,
)
from claiim_core.ids import rfc3339
from claiim_core.registry import Registry
from claiim_core.schemas import AdminCommand, AgentCommand
from claiim_core.tokens import hash_token, parse_time


class CommandError(Refusal):
    """The command does not apply to the registry as it is; the message says why."""

    default_code = Code.CONFLICT


def plan_agent_command(registry: Registry, org: str, cmd: AgentCommand,
                       ctx: PlanContext) -> tuple[AgentLifecycle | AgentUpdated, str | None]:
    """The event for ``cmd`` on an agent of ``org`` and, for rotate-token, the new token."""
    agent = registry.agents.get((org, cmd.agent_id))
    if agent is None:
        raise CommandError(f"no agent {cmd.agent_id!r} in org {org}", Code.NOT_FOUND)
    base: dict[str, Any] = {"event_id": ctx.new_id(), "at": ctx.now, "actor": ctx.actor, "org": org,
            "agent_id": agent.agent_id}
    if cmd.grace and cmd.op != "rotate-token":
        raise CommandError("only rotate-token takes a grace period", Code.INVALID)
    if cmd.op == "suspend":
        if agent.status == "suspended":
            raise CommandError(f"agent {agent.agent_id} is already suspended")
        return AgentSuspended(reason=cmd.reason, **base), None
    if cmd.op == "reactivate":
        if agent.status == "active":
            raise CommandError(f"agent {agent.agent_id} is already active")
        return AgentReactivated(reason=cmd.reason, **base), None
    if cmd.op == "set-anchor":
        if not cmd.anchor:
            raise CommandError("set-anchor needs the new anchor", Code.INVALID)
        if cmd.anchor == agent.anchor:
            raise CommandError(f"agent {agent.agent_id}'s anchor is already {agent.anchor}")
        return AgentUpdated(anchor=cmd.anchor, description=agent.description, skills=agent.skills,
                            policy=agent.policy, **base), None
    if cmd.op == "set-shadow":
        return AgentShadowSet(policy=_candidate(registry, org, agent.shadow, cmd.policy), **base), None
    if cmd.op == "rotate-token":
        token = ctx.new_token("agent", org)
        if cmd.grace:
            until = parse_time(ctx.now) + timedelta(seconds=cmd.grace)
            base["grace_until"] = rfc3339(round(until.timestamp() * 1_000_000))
        return AgentTokenRotated(token_hash=hash_token(ctx.token_secret, token), **base), token
    if not agent.token_hash:
        raise CommandError(f"agent {agent.agent_id} has no valid token to revoke")
    return AgentTokenRevoked(reason=cmd.reason, **base), None


def _candidate(registry: Registry, org: str, current: str, ref: str) -> str:
    """The exact label of the candidate ``ref`` names (``pay`` pins its newest version), or "" to remove."""
    if not ref:
        if not current:
            raise CommandError("the agent has no log-only candidate to remove")
        return ""
    found = registry.resolve_policy(org, ref)
    if found is None:
        raise CommandError(f"no policy {ref!r} in org {org}", Code.NOT_FOUND)
    if found.label == current:
        raise CommandError(f"{found.label} is already the agent's log-only candidate")
    return found.label


def plan_admin_command(registry: Registry, org: str, cmd: AdminCommand,
                       ctx: PlanContext) -> tuple[AdminEnrolled | AdminRevoked, str | None]:
    """Enrol an admin (the reply carries its token, shown once) or revoke one."""
    if org not in registry.orgs:
        raise CommandError(f"no org {org!r}", Code.NOT_FOUND)
    existing = registry.admins.get((org, cmd.name))
    base: dict[str, Any] = {"event_id": ctx.new_id(), "at": ctx.now, "actor": ctx.actor, "org": org, "name": cmd.name}
    if cmd.op == "enrol":
        if cmd.name == OPERATOR:
            raise CommandError(f"{OPERATOR!r} is reserved for the installation's bootstrap token", Code.INVALID)
        if existing is not None:
            raise CommandError(f"{cmd.name} is already enrolled in org {org} as {existing.role}; "
                               "revoke first to change the role or the token")
        token = ctx.new_token("admin", org)
        return AdminEnrolled(role=cmd.role, token_hash=hash_token(ctx.token_secret, token), **base), token
    if existing is None:
        raise CommandError(f"no admin {cmd.name!r} in org {org}", Code.NOT_FOUND)
    others = [a for key, a in registry.admins.items() if key[0] == org and a.role == "admin" and a.name != cmd.name]
    if existing.role == "admin" and not others and ctx.actor != OPERATOR:
        raise CommandError(f"{cmd.name} is the last admin of org {org}; enrol another admin first")
    return AdminRevoked(reason=cmd.reason, **base), None


def plan_org_create(registry: Registry, org: str, description: str, ctx: PlanContext) -> OrgCreated:
    if org in registry.orgs:
        raise CommandError(f"org {org} already exists")
    return OrgCreated(event_id=ctx.new_id(), at=ctx.now, actor=ctx.actor, org=org, description=description)
