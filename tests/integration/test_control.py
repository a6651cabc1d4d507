"""The control plane as events: apply, idempotency, versions, and projection rebuilds."""

from __future__ import annotations

import asyncio
import copy

import msgspec
import pytest
from claiim import AdminError, AsyncAdmin, AsyncGate
from claiim_core.eventauth import seal_control
from claiim_core.events import AdminRevoked
from claiim_core.explain import policy_diff
from claiim_core.schemas import ApplyReply
from claiim_runtime.follower import RegistryFollower
from claiim_server.bootstrap import start_services
from claiim_server.stack import demo_bundle

from tests.conftest import Stack

pytestmark = pytest.mark.integration


async def test_applying_the_demo_bundle_again_changes_nothing(stack: Stack) -> None:
    """A second apply of the same bundle publishes no event and issues no token."""
    before = stack.running.followers[0].registry.last_seq
    reply = await stack.admin.apply(demo_bundle())
    assert reply.tokens == {}
    assert all(c.startswith("unchanged") for c in reply.changes), reply.changes
    assert stack.running.followers[0].registry.last_seq == before


async def test_a_gate_started_later_rebuilds_the_same_projection(stack: Stack) -> None:
    """A new follower replaying the control stream ends with a registry equal to the live one."""
    js = stack.running.connections["control"].jetstream()
    fresh = RegistryFollower(js, stack.names, stack.settings.require_control_keyring())
    await fresh.start()
    try:
        assert fresh.registry == stack.running.followers[-1].registry
        assert fresh.registry.last_seq > 0
    finally:
        await fresh.stop()


async def test_new_policy_version_takes_effect_and_is_recorded(stack: Stack) -> None:
    """Rebinding review-bot to a new policy version changes its next decision and names the version."""
    bundle = copy.deepcopy(demo_bundle())
    bundle["policies"].append({"name": "review", "version": 3, "skill": "review-v1",
                               "allow": ["pr:comment", "pr:approve"], "deny": ["pr:merge"]})
    bundle["agents"][1]["policy"] = "review"  # latest
    reply = await stack.admin.apply(bundle)
    assert "published policy review-v3" in reply.changes and "updated agent review-bot" in reply.changes
    async with AsyncGate("review-bot", stack.tokens["review-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        result = await gate.check(action="pr:approve")
    assert (result.outcome, result.policy) == ("ALLOW", "review-v3")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b["policies"][0].update(allow=["deploy:everything-new"]), "versions are immutable"),
    (lambda b: b["skills"].append({"name": "x", "version": 3, "actions": ["a:b"]}), "would skip versions"),
    (lambda b: b["agents"][0].update(policy="missing-v1"), "no policy missing-v1"),
    (lambda b: b["agents"][0].update(skills=["deploy-v9"]), "no skill deploy-v9"),
    (lambda b: b["policies"][0].update(allow=["bad action!"]), "not an action pattern"),
    (lambda b: b["agents"][0].update(policy="review-v2"), "governs skill review-v1"),
    (lambda b: b.update(colour="blue"), "unknown key 'colour'"),
])
async def test_bad_bundles_are_refused_with_the_place_and_reason(stack: Stack, mutate, message) -> None:  # type: ignore[no-untyped-def]
    """A bad bundle is refused as a whole, naming what is wrong, and nothing is published."""
    bundle = copy.deepcopy(demo_bundle())
    mutate(bundle)
    before = stack.running.followers[0].registry.last_seq
    with pytest.raises(AdminError, match=message):
        await stack.admin.apply(bundle)
    assert stack.running.followers[0].registry.last_seq == before


async def test_admin_api_refuses_a_bad_admin_token(stack: Stack) -> None:
    """Apply and Chron queries with a wrong admin token are refused."""
    intruder = AsyncAdmin(stack.settings.url, "adm_wrong", namespace=stack.settings.namespace)
    try:
        with pytest.raises(AdminError, match="unauthorized"):
            await intruder.apply(demo_bundle())
        with pytest.raises(AdminError, match="unauthorized"):
            await intruder.chron_list()
    finally:
        await intruder.close()


async def test_tokens_are_never_published(stack: Stack) -> None:
    """No plaintext agent token appears anywhere in the control stream."""
    js = stack.running.connections["control"].jetstream()
    sub = await js.subscribe(stack.names.control_wildcard, stream=stack.names.control_stream, ordered_consumer=True)
    seen = b""
    try:
        for _ in range(stack.running.followers[0].registry.last_seq):
            msg = await sub.next_msg(timeout=2)
            seen += msg.data
    finally:
        await sub.unsubscribe()
    assert b"token_hash" in seen
    for token in stack.tokens.values():
        assert token.encode() not in seen


async def test_explain_shows_the_path_and_records_nothing(stack: Stack) -> None:
    """explain gives the gate's verdict with the skill and policy steps, and adds nothing to Chron."""
    reply = await stack.admin.explain("deploy-bot", "deploy:production")
    assert (reply.outcome, reply.reason, reply.rule) == (
        "DENY", "policy:no-prod-v1 -- action explicitly denied", "deny[0]: deploy:production")
    assert reply.steps[1] == "skill deploy-v2 -> deploy-v2: covers deploy:production (actions[1]: deploy:production)"
    assert reply.steps[2].startswith("policy no-prod-v1 -> no-prod-v1 on target '': deny matches deny[0]")
    allowed = await stack.admin.explain("review-bot", "pr:comment")
    assert allowed.outcome == "ALLOW"
    unknown = await stack.admin.explain("ghost", "a:b")
    assert unknown.outcome == "DENY" and unknown.reason == "agent:unknown"
    assert stack.running.chron is not None
    await asyncio.sleep(0.3)
    assert await stack.running.chron.store.query(kind="decision") == []


async def test_policy_versions_and_diff(stack: Stack) -> None:
    """The versions of a policy come back in order, and the diff names what changed."""
    versions = await stack.admin.policy_versions("review")
    assert [v.label for v in versions] == ["review-v1", "review-v2"]
    assert policy_diff(versions[0], versions[1]) == [
        "- description: Comment only.", "+ description: Comment; merging is for humans.", "+ deny: pr:merge"]
    with pytest.raises(AdminError, match="no policy 'nope'"):
        await stack.admin.policy_versions("nope")


async def test_of_two_conflicting_commands_one_wins(stack: Stack) -> None:
    """Two control replicas publishing different contents as the same version: one wins, one is refused."""
    replicas = [await start_services(stack.settings, which=("control",)) for _ in range(2)]
    try:
        def bundle(action: str) -> bytes:
            return msgspec.json.encode({"admin_token": stack.settings.require_admin_token(), "bundle": {
                "org": "demo", "skills": [{"name": "race", "version": 1, "actions": [action]}]}})

        replies = await asyncio.gather(*[r.control.answer("apply", bundle(f"race:{i}"))  # type: ignore[union-attr]
                                         for i, r in enumerate(replicas)])
        winners = [r for r in replies if isinstance(r, ApplyReply) and r.ok]
        losers = [r for r in replies if r not in winners]
        assert len(winners) == 1 and len(losers) == 1, replies
        # The loser either lost the append (conflict) or planned after the winner's version landed (invalid).
        assert (losers[0].code, "conflict" in (losers[0].error or "")) in (("conflict", True), ("invalid", False)), \
            losers[0]
        registry = replicas[0].followers[0].registry
        await replicas[0].followers[0].wait_caught_up()
        assert len(registry.skills[("demo", "race")]) == 1
    finally:
        for r in replicas:
            await r.stop()


async def test_control_events_that_do_not_decode_or_apply_are_skipped(stack: Stack) -> None:
    """Garbage, and a genuinely signed event about an admin nobody enrolled, on the control stream do not
    stall the projection."""
    names = stack.names
    js = stack.running.connections["control"].jetstream()
    await js.publish(names.control_subject("demo", "agent", "x"), b"{not json", stream=names.control_stream)
    ghost = AdminRevoked(event_id="chr_01m8ad0000000000000000ghost", at="2026-11-25T00:00:00.000000Z",
                         actor="operator", org="demo", name="ghost", reason="")
    ack = await js.publish(names.control_subject("demo", "admin", "ghost"),
                           seal_control(ghost, 0, stack.settings.require_control_signer()), stream=names.control_stream)
    await stack.running.followers[0].wait_for(ack.seq, timeout=5)
    done = await stack.admin.suspend("deploy-bot")
    assert done.control_seq > ack.seq
    assert [a.agent_id for a in await stack.admin.agents() if a.status == "suspended"] == ["deploy-bot"]
