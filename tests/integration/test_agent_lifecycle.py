"""Suspend, reactivate, rotate and revoke, end to end; suspension reaching two gate replicas."""

from __future__ import annotations

import asyncio
import time

import pytest
from claiim import AdminError, AsyncGate, UnauthorizedError
from claiim.transport import NatsTransport
from claiim_runtime.follower import RegistryFollower
from claiim_server.bootstrap import start_services

from tests.conftest import AUTH_ON, Stack

pytestmark = pytest.mark.integration


async def check(stack: Stack, token: str, action: str = "deploy:staging") -> tuple[str, str]:
    """The gate's own answer to deploy-bot asking with ``token``, sent over review-bot's connection.

    With NATS authentication a suspended agent or a retired token cannot even connect; the gate's
    checks, the second line, are reached through another admitted agent."""
    carrier = NatsTransport(stack.settings.url, user="review-bot", token=stack.tokens["review-bot"])
    async with AsyncGate("deploy-bot", token, stack.settings.url, namespace=stack.settings.namespace,
                         transport=carrier) as gate:
        result = await gate.check(action=action, target="api-v2")
    return result.outcome, result.reason


async def own(stack: Stack, token: str) -> str:
    """deploy-bot asking over its own connection, logged in with ``token``: the outcome."""
    async with AsyncGate("deploy-bot", token, stack.settings.url, namespace=stack.settings.namespace) as gate:
        return (await gate.check(action="deploy:staging", target="api-v2")).outcome


async def refused_by_nats(stack: Stack, token: str) -> bool:
    if not AUTH_ON:
        return True  # an existing nats-server without claiim's configuration admits anyone
    try:
        await own(stack, token)
    except UnauthorizedError as e:
        return "refused this token" in str(e)
    return False


async def test_suspend_denies_and_reactivate_restores(stack: Stack) -> None:
    """A suspended agent cannot connect, and the gate denies it with its own reason; reactivated, it is
    allowed again."""
    token = stack.tokens["deploy-bot"]
    await stack.admin.suspend("deploy-bot", reason="incident 42")
    assert await check(stack, token) == ("DENY", "agent:suspended -- agent deploy-bot is suspended")
    assert await refused_by_nats(stack, token)
    with pytest.raises(AdminError, match="already suspended"):
        await stack.admin.suspend("deploy-bot")
    await stack.admin.reactivate("deploy-bot", reason="resolved")
    assert (await check(stack, token))[0] == "ALLOW"
    assert await own(stack, token) == "ALLOW"


async def test_rotation_and_revocation_have_their_own_reasons(stack: Stack) -> None:
    """A rotated-out token and a revoked token are each denied with their own reason, and refused by NATS."""
    old = stack.tokens["deploy-bot"]
    new = await stack.admin.rotate_token("deploy-bot")
    assert new != old and new.startswith("clm_")
    assert await check(stack, old) == ("DENY", "auth:rotated-token -- this token of agent deploy-bot was rotated")
    assert await refused_by_nats(stack, old)
    assert (await check(stack, new))[0] == "ALLOW" and await own(stack, new) == "ALLOW"
    await stack.admin.revoke_token("deploy-bot", reason="leaked")
    assert await check(stack, new) == ("DENY", "auth:revoked-token -- this token of agent deploy-bot was revoked")
    assert await refused_by_nats(stack, new)
    with pytest.raises(AdminError, match="no valid token"):
        await stack.admin.revoke_token("deploy-bot")
    newest = await stack.admin.rotate_token("deploy-bot")
    assert (await check(stack, newest))[0] == "ALLOW" and await own(stack, newest) == "ALLOW"
    assert (await check(stack, "clm_" + "x" * 43))[1].startswith("auth:bad-token")


async def test_unknown_agent_commands_are_refused(stack: Stack) -> None:
    """A lifecycle command for an agent that does not exist is refused and appends nothing."""
    before = stack.running.followers[0].registry.last_seq
    with pytest.raises(AdminError, match="no agent 'ghost'"):
        await stack.admin.suspend("ghost")
    assert stack.running.followers[0].registry.last_seq == before


async def test_lifecycle_events_are_in_chron(stack: Stack) -> None:
    """Each lifecycle command is a control event in Chron, naming the agent, and holds no token."""
    new = await stack.admin.rotate_token("deploy-bot")
    await stack.admin.suspend("deploy-bot", reason="drill")
    assert stack.running.chron is not None
    for _ in range(100):
        rows = await stack.running.chron.store.query(kind="control", agent_id="deploy-bot")
        if {r["action"] for r in rows} >= {"agent.token-rotated", "agent.suspended"}:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("lifecycle events not in Chron")
    assert all(new.encode() not in bytes(r["event"]) for r in rows)


async def test_suspension_reaches_two_gate_replicas_within_a_second(stack: Stack) -> None:
    """After suspend returns, two separate gate replicas both deny the agent within one second."""
    replicas = [await start_services(stack.settings, which=("gate",), instance=f"replica-{i}") for i in range(2)]
    followers: list[RegistryFollower] = [r.followers[0] for r in replicas]
    try:
        started = time.monotonic()
        await stack.admin.suspend("deploy-bot")
        lags = []
        for follower in followers:
            while follower.registry.agents[("demo", "deploy-bot")].status != "suspended":
                assert time.monotonic() - started < 1.0, "suspension did not reach a replica within 1 s"
                await asyncio.sleep(0.001)
            lags.append(time.monotonic() - started)
        print(f"suspension visible in both replicas after {max(lags) * 1000:.1f} ms (command included)")
        assert max(lags) < 1.0
    finally:
        for r in replicas:
            await r.stop()
