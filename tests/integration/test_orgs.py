"""Organizations are boundaries, and admins act by role: end to end over NATS, with Chron in PostgreSQL.

The stack holds the demo org (agents deploy-bot and review-bot) and org acme, which has its own
``deploy-bot``. Oscar administers acme; he and acme's agent try every command and query against
demo and get nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from claiim import AdminError, AsyncAdmin, AsyncGate, UnauthorizedError
from claiim_core.schemas import ChronRecord

from tests.conftest import AUTH_ON, Stack, gate_via

pytestmark = pytest.mark.integration

ACME = {
    "org": "acme",
    "skills": [{"name": "deploy", "actions": ["deploy:*"]}],
    "policies": [{"name": "anything", "skill": "deploy", "allow": ["deploy:*"]}],
    "agents": [{"id": "deploy-bot", "anchor": "o.wner", "skills": ["deploy"], "policy": "anything"}],
}


@dataclass
class Orgs:
    stack: Stack
    alice: AsyncAdmin  # admin of demo
    bob: AsyncAdmin  # admin of demo
    audrey: AsyncAdmin  # auditor of demo
    oscar: AsyncAdmin  # admin of acme
    oscar_token: str
    acme_token: str  # acme's deploy-bot

    def as_admin(self, token: str, org: str | None = None) -> AsyncAdmin:
        s = self.stack.settings
        return AsyncAdmin(s.url, token, org=org, namespace=s.namespace)

    async def decide(self, agent_id: str, token: str, action: str = "deploy:staging") -> Any:
        s = self.stack.settings
        async with AsyncGate(agent_id, token, s.url, namespace=s.namespace) as gate:
            return await gate.check(action=action, target="api-v2")

    async def chron(self, chron_id: str) -> ChronRecord:
        """The record of ``chron_id`` as the operator sees it (every org), once Chron has stored it."""
        operator = self.as_admin(self.stack.settings.require_admin_token(), org="")
        try:
            for _ in range(100):
                record = await operator.chron_show(chron_id)
                if record is not None:
                    return record
                await asyncio.sleep(0.05)
        finally:
            await operator.close()
        raise AssertionError(f"{chron_id} never reached Chron")


@pytest.fixture
async def orgs(stack: Stack) -> AsyncIterator[Orgs]:
    operator = stack.admin
    await operator.create_org("acme", "Acme Corp")
    operator_in_acme = AsyncAdmin(stack.settings.url, stack.settings.require_admin_token(), org="acme",
                                  namespace=stack.settings.namespace)
    try:
        acme = await operator_in_acme.apply(ACME)
        oscar = await operator_in_acme.enrol_admin("oscar")
    finally:
        await operator_in_acme.close()
    alice = await operator.enrol_admin("alice")
    bob = await operator.enrol_admin("bob")
    audrey = await operator.enrol_admin("audrey", "auditor")
    o = Orgs(stack, None, None, None, None, oscar, acme.tokens["deploy-bot"])  # type: ignore[arg-type]
    o.alice, o.bob, o.audrey, o.oscar = o.as_admin(alice), o.as_admin(bob), o.as_admin(audrey), o.as_admin(oscar)
    try:
        yield o
    finally:
        for admin in (o.alice, o.bob, o.audrey, o.oscar):
            await admin.close()


DEMO_BUNDLE = {"org": "demo", "skills": [{"name": "evil", "actions": ["db:drop"]}]}


def attempts_on_demo(admin: AsyncAdmin) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every admin command and query, aimed at the org ``admin`` names (demo's names in it)."""
    bundle = {**DEMO_BUNDLE, "org": admin.org}
    return {
        "apply": lambda: admin.apply(bundle),
        "apply dry run": lambda: admin.apply(bundle, dry_run=True),
        "suspend": lambda: admin.suspend("review-bot"),
        "reactivate": lambda: admin.reactivate("review-bot"),
        "set-anchor": lambda: admin.set_anchor("review-bot", "o.wner"),
        "rotate-token": lambda: admin.rotate_token("review-bot"),
        "revoke-token": lambda: admin.revoke_token("review-bot"),
        "enrol admin": lambda: admin.enrol_admin("mole"),
        "revoke admin": lambda: admin.revoke_admin("alice"),
        "orgs": lambda: admin.registry("orgs"),
        "agents": admin.agents,
        "agent": lambda: admin.agent("review-bot"),
        "skills": admin.skills,
        "skill versions": lambda: admin.skill_versions("review"),
        "policies": admin.policies,
        "policy versions": lambda: admin.policy_versions("review"),
        "admins": admin.admins,
        "explain": lambda: admin.explain("review-bot", "pr:comment"),
        "chron list": lambda: admin.chron_list(),
        "chron show": lambda: admin.chron_show("chr_00000000000000000000000000"),
    }


@pytest.mark.parametrize("target_org", ["demo", "no-such-org"])
async def test_an_admin_of_another_org_gets_nothing(orgs: Orgs, target_org: str) -> None:
    """Oscar (acme) naming demo, or an org that does not exist, is refused alike for every command and query."""
    before = orgs.stack.running.followers[0].registry.last_seq
    oscar_there = orgs.as_admin(orgs.oscar_token, org=target_org)
    try:
        for name, attempt in attempts_on_demo(oscar_there).items():
            with pytest.raises(AdminError) as info:
                await attempt()
            assert str(info.value) == f"forbidden: admin oscar of org acme cannot act in org {target_org}", name
    finally:
        await oscar_there.close()
    assert orgs.stack.running.followers[0].registry.last_seq == before, "a refused command changed the registry"


async def test_an_admin_sees_only_its_own_org(orgs: Orgs) -> None:
    """Without naming an org, oscar reads acme only: demo's names appear nowhere in what he gets."""
    oscar = orgs.oscar
    assert (await oscar.whoami()).principal == "admin oscar of org acme"
    assert [o.name for o in await oscar.orgs()] == ["acme"]
    assert [(a.org, a.agent_id, a.anchor) for a in await oscar.agents()] == [("acme", "deploy-bot", "o.wner")]
    assert [s.label for s in await oscar.skills()] == ["deploy-v1"]
    assert [p.label for p in await oscar.policies()] == ["anything-v1"]
    assert [a.name for a in await oscar.admins()] == ["oscar"]
    for call in (lambda: oscar.agent("review-bot"), lambda: oscar.policy_versions("review"),
                 lambda: oscar.skill_versions("review"), lambda: oscar.suspend("review-bot")):
        with pytest.raises(AdminError, match="in org acme"):
            await call()
    assert (await oscar.explain("review-bot", "pr:comment")).reason == "agent:unknown"
    with pytest.raises(AdminError, match="only the operator creates orgs"):
        await oscar.create_org("acme2")


async def test_decisions_and_chron_are_per_org(orgs: Orgs) -> None:
    """Each org's deploy-bot is its own agent; Chron queries of one org never return the other's records."""
    demo_deny = await orgs.decide("deploy-bot", orgs.stack.tokens["deploy-bot"], "deploy:production")
    acme_allow = await orgs.decide("deploy-bot", orgs.acme_token, "deploy:production")
    assert (demo_deny.outcome, demo_deny.anchor) == ("DENY", "s.emp1")
    assert (acme_allow.outcome, acme_allow.anchor, acme_allow.policy) == ("ALLOW", "o.wner", "anything-v1")
    # acme's agent token naming demo's agents reaches nothing of demo: NATS refuses it, and so does the gate
    if AUTH_ON:
        with pytest.raises(UnauthorizedError):
            await orgs.decide("review-bot", orgs.acme_token, "pr:comment")
    async with gate_via(orgs.stack, "review-bot", orgs.acme_token) as gate:
        probe = await gate.check(action="pr:comment", target="api-v2")
    assert (probe.outcome, probe.reason) == ("DENY", "agent:unknown -- no agent 'review-bot' is registered in org acme")
    records = {r: await orgs.chron(r.chron_id) for r in (demo_deny, acme_allow, probe)}
    assert [rec.org for rec in records.values()] == ["demo", "acme", "acme"]
    subjects = [rec.subject for rec in records.values()]
    assert subjects[0].endswith(".decision.demo.deploy-bot.deny")
    assert subjects[1].endswith(".decision.acme.deploy-bot.allow")

    oscar_sees = {r.chron_id for r in await orgs.oscar.chron_list(limit=1000)}
    alice_sees = {r.chron_id for r in await orgs.alice.chron_list(limit=1000)}
    assert {acme_allow.chron_id, probe.chron_id} <= oscar_sees and demo_deny.chron_id not in oscar_sees
    assert demo_deny.chron_id in alice_sees and not {acme_allow.chron_id, probe.chron_id} & alice_sees
    assert await orgs.oscar.chron_show(demo_deny.chron_id) is None
    control = await orgs.oscar.chron_list(kind="control", limit=1000)
    assert control and {r.org for r in control} == {"acme"}


async def test_an_auditor_reads_everything_and_changes_nothing(orgs: Orgs) -> None:
    audrey = orgs.audrey
    assert (await audrey.whoami()).role == "auditor"
    assert {a.agent_id for a in await audrey.agents()} == {"deploy-bot", "review-bot"}
    assert [v.label for v in await audrey.policy_versions("review")] == ["review-v1", "review-v2"]
    assert (await audrey.explain("deploy-bot", "deploy:staging", "api-v2")).outcome == "ALLOW"
    for _ in range(100):  # the demo org's control events reach Chron a moment after they are applied
        if await audrey.chron_list(kind="control"):
            break
        await asyncio.sleep(0.05)
    assert await audrey.chron_list(kind="control")
    before = orgs.stack.running.followers[0].registry.last_seq
    for call in (lambda: audrey.apply(DEMO_BUNDLE), lambda: audrey.apply(DEMO_BUNDLE, dry_run=True),
                 lambda: audrey.suspend("deploy-bot"), lambda: audrey.rotate_token("deploy-bot"),
                 lambda: audrey.enrol_admin("mole"), lambda: audrey.revoke_admin("alice")):
        with pytest.raises(AdminError, match="forbidden: auditor audrey of org demo is read-only"):
            await call()
    assert orgs.stack.running.followers[0].registry.last_seq == before


async def test_admin_changes_are_recorded_naming_the_admin(orgs: Orgs) -> None:
    """Alice suspends an agent (at once) and proposes a new anchor, which Bob approves; Chron's control
    records name each of them."""
    await orgs.alice.suspend("review-bot", reason="audit")
    proposed = await orgs.alice.set_anchor("review-bot", "k.lee")
    assert proposed.proposal_id and (await orgs.alice.agent("review-bot")).anchor == "j.smith"
    await orgs.bob.approve(proposed.proposal_id, reason="new owner")
    assert (await orgs.alice.agent("review-bot")).anchor == "k.lee"
    for _ in range(100):
        control = await orgs.audrey.chron_list(kind="control", limit=20)
        mine = [r for r in control if r.actor == "alice"]
        if len(mine) == 3 and len({r.action for r in control if r.actor == "bob"}) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(r.action for r in mine) == ["agent.suspended", "agent.updated", "proposal.created"]
    assert {r.action for r in control if r.actor == "bob"} == {"proposal.approved", "proposal.applied"}
    enrolments = [r for r in control if r.action == "admin.enrolled"]
    assert {r.actor for r in enrolments} == {"operator"}
    assert all("cla_" not in bytes(r.event).decode() for r in control), "an admin token reached Chron"


async def test_a_revoked_admin_is_refused_at_once(orgs: Orgs) -> None:
    await orgs.alice.revoke_admin("audrey", reason="left the team")
    with pytest.raises(AdminError, match="unauthorized: not a valid admin token"):
        await orgs.audrey.agents()
    with pytest.raises(AdminError, match="unauthorized"):
        await orgs.audrey.chron_list()
    await orgs.alice.revoke_admin("bob", reason="left too")  # narrowing: no approval needed
    with pytest.raises(AdminError, match="last admin of org demo"):
        await orgs.alice.revoke_admin("alice")


async def test_an_agent_token_is_not_an_admin_token(orgs: Orgs) -> None:
    agent_as_admin = orgs.as_admin(orgs.stack.tokens["deploy-bot"])
    try:
        with pytest.raises(AdminError, match="unauthorized"):
            await agent_as_admin.agents()
    finally:
        await agent_as_admin.close()
