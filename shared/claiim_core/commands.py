"""Agent lifecycle commands: suspend, reactivate, rotate and revoke tokens.

Each command is checked against the registry and becomes exactly one control event.
"""

from __future__ import annotations

from claiim_core.bundle import PlanContext
from claiim_core.events import (
    AgentLifecycle,
    AgentReactivated,
    AgentSuspended,
    AgentTokenRevoked,
    AgentTokenRotated,
)
from claiim_core.registry import Registry
from claiim_core.schemas import AgentCommand
from claiim_core.tokens import hash_token


class CommandError(ValueError):
    """The command does not apply to the registry as it is; the message says why."""


def plan_agent_command(registry: Registry, cmd: AgentCommand,
                       ctx: PlanContext) -> tuple[AgentLifecycle, str | None]:
    """The event for ``cmd`` and, for rotate-token, the new plaintext token."""
    agent = registry.agents.get(cmd.agent_id)
    if agent is None:
        raise CommandError(f"no agent {cmd.agent_id!r} is registered")
    base = {"event_id": ctx.new_id(), "at": ctx.now, "actor": ctx.actor, "org": agent.org,
            "agent_id": agent.agent_id}
    if cmd.op == "suspend":
        if agent.status == "suspended":
            raise CommandError(f"agent {agent.agent_id} is already suspended")
        return AgentSuspended(reason=cmd.reason, **base), None
    if cmd.op == "reactivate":
        if agent.status == "active":
            raise CommandError(f"agent {agent.agent_id} is already active")
        return AgentReactivated(reason=cmd.reason, **base), None
    if cmd.op == "rotate-token":
        token = ctx.new_token()
        return AgentTokenRotated(token_hash=hash_token(ctx.token_secret, token), **base), token
    if not agent.token_hash:
        raise CommandError(f"agent {agent.agent_id} has no valid token to revoke")
    return AgentTokenRevoked(reason=cmd.reason, **base), None
