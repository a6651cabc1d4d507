"""Two-person control over NATS: who may approve what, expiry, M-of-N, and that exactly the
stored change is applied."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from claiim import AdminError, AsyncAdmin
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.stack import demo_bundle

from tests.conftest import Stack, backend, gate_via

pytestmark = pytest.mark.integration


@dataclass
class Admins:
    stack: Stack
    alice: AsyncAdmin
    bob: AsyncAdmin
    carol: AsyncAdmin
    audrey: AsyncAdmin  # auditor
    oscar: AsyncAdmin  # admin of org acme
    oscar_token: str

    def all(self) -> list[AsyncAdmin]:
        return [self.alice, self.bob, self.carol, self.audrey, self.oscar]


async def admins_of(stack: Stack) -> Admins:
    s = stack.settings

    def client(token: str) -> AsyncAdmin:
        return AsyncAdmin(s.url, token, org="", namespace=s.namespace)

    operator = stack.admin
    tokens = [await operator.enrol_admin(n) for n in ("alice", "bob", "carol")]
    audrey = await operator.enrol_admin("audrey", "auditor")
    await operator.create_org("acme")
    in_acme = AsyncAdmin(s.url, s.require_admin_token(), org="acme", namespace=s.namespace)
    try:
        oscar = await in_acme.enrol_admin("oscar")
    finally:
        await in_acme.close()
    return Admins(stack, *(client(t) for t in tokens), client(audrey), client(oscar), oscar)


@pytest.fixture
async def admins(stack: Stack) -> AsyncIterator[Admins]:
    a = await admins_of(stack)
    try:
        yield a
    finally:
        for c in a.all():
            await c.close()


BOT = {"org": "demo", "agents": [{"id": "new-bot", "anchor": "n.ew", "skills": ["deploy-v2"], "policy": "no-prod-v1"}]}


async def check(stack: Stack, agent: str, token: str) -> str:
    """The gate's reason for the agent's request, carried over review-bot's connection (an agent that is
    not registered yet cannot connect to NATS itself)."""
    async with gate_via(stack, agent, token) as gate:
        return (await gate.check(action="deploy:staging", target="api-v2")).reason


async def test_a_widening_change_waits_and_the_stored_change_is_applied(admins: Admins) -> None:
    proposed = await admins.alice.apply(BOT)
    assert proposed.proposal_id and proposed.pending.startswith("1 approval by other admins of org demo before ")
    token = proposed.tokens["new-bot"]
    assert (await check(admins.stack, "new-bot", token)).startswith("agent:unknown"), "applied before approval"
    shown = await admins.bob.proposal(proposed.proposal_id)
    assert (shown.status, shown.proposer, shown.summary) == ("pending", "alice", ["registered agent new-bot"])
    [stored] = shown.events
    done = await admins.bob.approve(proposed.proposal_id, reason="looks right", change_hash=shown.change_hash)
    assert done.change.startswith(f"applied proposal {proposed.proposal_id}")
    assert (await check(admins.stack, "new-bot", token)) == "policy:no-prod-v1 -- action allowed"
    after = await admins.alice.proposal(proposed.proposal_id)
    assert (after.status, [a.admin for a in after.approvals], after.closed_by) == ("applied", ["bob"], "bob")
    assert admins.stack.running.chron is not None
    for _ in range(100):  # the applied event is the stored one: same id, proposer as actor
        rows = await admins.stack.running.chron.store.query(chron_id=stored["event_id"])
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows and rows[0]["actor"] == "alice" and rows[0]["action"] == "agent.registered"


async def test_who_may_not_approve(admins: Admins) -> None:
    pid = (await admins.alice.set_anchor("deploy-bot", "k.lee")).proposal_id
    with pytest.raises(AdminError, match=r"alice proposed .* and cannot approve it"):
        await admins.alice.approve(pid)
    with pytest.raises(AdminError, match="forbidden: auditor audrey of org demo is read-only"):
        await admins.audrey.approve(pid)
    oscar_in_demo = AsyncAdmin(admins.stack.settings.url, admins.oscar_token, org="demo",
                               namespace=admins.stack.settings.namespace)
    try:
        with pytest.raises(AdminError, match="forbidden: admin oscar of org acme cannot act in org demo"):
            await oscar_in_demo.approve(pid)
    finally:
        await oscar_in_demo.close()
    with pytest.raises(AdminError, match=f"no proposal '{pid}' in org acme"):
        await admins.oscar.approve(pid)
    with pytest.raises(AdminError, match="the operator does not approve proposals"):
        await admins.stack.admin.approve(pid)
    with pytest.raises(AdminError, match="not the change you reviewed"):
        await admins.bob.approve(pid, change_hash="sha256:" + "0" * 64)
    assert (await admins.bob.agent("deploy-bot")).anchor == "s.emp1"
    await admins.bob.approve(pid)
    assert (await admins.bob.agent("deploy-bot")).anchor == "k.lee"
    with pytest.raises(AdminError, match=f"proposal {pid} is applied"):
        await admins.carol.approve(pid)


async def test_rejected_proposals_cannot_be_approved(admins: Admins) -> None:
    pid = (await admins.alice.admin_command("enrol", "dave")).proposal_id
    await admins.bob.reject(pid, reason="no")
    with pytest.raises(AdminError, match=f"proposal {pid} is rejected \\(no\\)"):
        await admins.carol.approve(pid)
    assert "dave" not in {a.name for a in await admins.bob.admins()}


async def test_m_of_n_and_changing_the_rule_is_itself_a_proposal(admins: Admins) -> None:
    rule = await admins.alice.set_approvals(2)
    assert rule.proposal_id, "changing the approval rule must wait for approval"
    await admins.bob.approve(rule.proposal_id)
    assert (await admins.bob.registry("admins")).approvals_required == 2
    pid = (await admins.alice.set_anchor("review-bot", "m.n")).proposal_id
    half = await admins.bob.approve(pid)
    assert half.change.endswith("needs 1 more approval(s)")
    assert (await admins.bob.agent("review-bot")).anchor == "j.smith"
    await admins.carol.approve(pid)
    assert (await admins.bob.agent("review-bot")).anchor == "m.n"


async def test_a_change_overtaken_by_another_fails_and_applies_nothing(admins: Admins) -> None:
    first = (await admins.alice.set_anchor("review-bot", "first.one")).proposal_id
    second = (await admins.carol.set_anchor("review-bot", "second.one")).proposal_id
    await admins.bob.approve(first)
    with pytest.raises(AdminError, match="approved, but not applied: the registry changed since the proposal"):
        await admins.bob.approve(second)
    assert (await admins.bob.agent("review-bot")).anchor == "first.one"
    assert (await admins.bob.proposal(second)).status == "failed"


async def test_narrowing_changes_apply_at_once(admins: Admins) -> None:
    for done in (await admins.alice.suspend("deploy-bot"), await admins.alice.revoke_token("review-bot")):
        assert not done.proposal_id
    assert (await admins.alice.agent("deploy-bot")).status == "suspended"
    assert (await admins.alice.reactivate("deploy-bot")).proposal_id, "reactivating widens: it waits"


async def test_expired_proposals_cannot_be_approved(stack_settings: Settings) -> None:
    settings = Settings(**{**stack_settings.model_dump(), "proposal_ttl": 0.5})
    running = await start_services(settings, backend(settings), instance="expiry")
    operator = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo", namespace=settings.namespace)
    await operator.apply(demo_bundle())
    stack = Stack(settings, running, operator, {})
    admins = await admins_of(stack)
    try:
        pid = (await admins.alice.set_anchor("deploy-bot", "late.one")).proposal_id
        await asyncio.sleep(0.7)
        with pytest.raises(AdminError, match=f"proposal {pid} expired at "):
            await admins.bob.approve(pid)
        assert running.control is not None and await running.control.expire_proposals() == 1
        shown = await admins.bob.proposal(pid)
        assert (shown.status, shown.closed_by) == ("expired", "claiim")
        assert (await admins.bob.agent("deploy-bot")).anchor == "s.emp1"
    finally:
        for c in admins.all():
            await c.close()
        await operator.close()
        await running.stop()
