"""Bundles: validation, the plan that turns one into control events, idempotence and immutability."""

from __future__ import annotations

import copy
from itertools import count
from typing import Any

import pytest
from claiim_core.bundle import BundleError, Plan, PlanContext, parse_bundle, plan_bundle
from claiim_core.canonical import canonical_bytes
from claiim_core.codes import Code
from claiim_core.events import AgentRegistered, AgentUpdated, PolicyPublished, SkillPublished
from claiim_core.ids import chron_id
from claiim_core.registry import Registry
from claiim_core.schemas import Change
from claiim_core.tokens import format_token, hash_token
from claiim_server.stack import demo_bundle

from tests.unit.seed import apply_all

SECRET = b"bundle-test-secret"
DEMO_CHANGES = [
    "created org demo",
    "published skill deploy-v1",
    "published skill deploy-v2",
    "published skill review-v1",
    "published policy no-prod-v1",
    "published policy review-v1",
    "published policy review-v2",
    "registered agent deploy-bot",
    "registered agent review-bot",
]


def context() -> PlanContext:
    """A plan context whose ids and tokens come from counters, so plans are reproducible."""
    ids = count(1)
    tokens = count(1)
    return PlanContext(
        actor="admin", now="2026-01-02T03:04:05.000000Z",
        new_id=lambda: chron_id(1_700_000_000_000, next(ids).to_bytes(10, "big")),
        new_token=lambda kind, org: format_token(kind, org, next(tokens).to_bytes(32, "big")),
        token_secret=SECRET,
    )


def plan(registry: Registry, data: dict[str, Any]) -> Plan:
    return plan_bundle(registry, parse_bundle(data), context())


def demo_registry() -> Registry:
    return apply_all(Registry(), plan(Registry(), demo_bundle()).events)


def problems_of(registry: Registry, data: dict[str, Any]) -> list[str]:
    with pytest.raises(BundleError) as info:
        plan(registry, data)
    return info.value.problems


# -- planning the demo bundle -------------------------------------------------------------------


def test_demo_bundle_plans_every_entry_and_two_tokens() -> None:
    """On an empty registry the demo bundle creates the org, three skill and three policy versions, two agents."""
    result = plan(Registry(), demo_bundle())
    assert [str(c) for c in result.changes] == DEMO_CHANGES
    assert len(result.events) == len(DEMO_CHANGES)
    assert sorted(result.tokens) == ["deploy-bot", "review-bot"]
    assert len(set(result.tokens.values())) == 2
    assert all(token.startswith("clm_") for token in result.tokens.values())
    assert not result.unchanged


def test_demo_events_carry_the_bundle_content() -> None:
    """The planned events hold the versions, actions, documents and bindings the bundle names."""
    events = plan(Registry(), demo_bundle()).events
    skills = [(e.name, e.version, e.actions) for e in events if isinstance(e, SkillPublished)]
    assert skills[0] == ("deploy", 1, ("deploy:staging", "health:check"))
    assert skills[1][:2] == ("deploy", 2) and "deploy:production" in skills[1][2]
    policies = {(e.name, e.version): e.document for e in events if isinstance(e, PolicyPublished)}
    assert policies[("no-prod", 1)].skill == "deploy-v2"
    assert policies[("review", 2)].deny == ("pr:merge",)
    agents = {e.agent_id: e for e in events if isinstance(e, AgentRegistered)}
    assert (agents["deploy-bot"].anchor, agents["deploy-bot"].skills, agents["deploy-bot"].policy) == (
        "s.emp1", ("deploy-v2",), "no-prod-v1")
    assert all((e.org, e.actor, e.at) == ("demo", "admin", "2026-01-02T03:04:05.000000Z") for e in events)
    assert len({e.event_id for e in events}) == len(events)


def test_planning_does_not_touch_the_registry() -> None:
    """plan_bundle works on a copy: the registry passed in is unchanged."""
    registry = Registry()
    plan(registry, demo_bundle())
    assert registry == Registry()


def test_applying_then_replanning_gives_no_events() -> None:
    """After the planned events are applied, the same bundle plans nothing and issues no tokens."""
    again = plan(demo_registry(), demo_bundle())
    assert again.events == []
    assert again.tokens == {}
    assert again.unchanged
    assert all(change.op == "unchanged" for change in again.changes)
    assert Change(op="unchanged", kind="policy", name="review", version=2) in again.changes


def test_unpinned_entries_publish_the_next_version_only_on_change() -> None:
    """Without ``version`` a skill is republished as latest+1 when its content differs, and not otherwise."""
    registry = demo_registry()
    same = {"org": "demo", "skills": [{"name": "deploy", "description": "Deploys, rollbacks and health checks.",
                                       "actions": demo_bundle()["skills"][1]["actions"]}]}
    assert plan(registry, same).events == []
    changed = {"org": "demo", "skills": [{"name": "deploy", "actions": ["deploy:staging"]}]}
    result = plan(registry, changed)
    assert result.changes == [Change(op="published", kind="skill", name="deploy", version=3)]
    assert isinstance(result.events[0], SkillPublished) and result.events[0].version == 3


def test_changed_agent_is_updated_without_a_new_token() -> None:
    """An agent whose binding changes gets AgentUpdated and no new token."""
    data = demo_bundle()
    data["agents"][0]["anchor"] = "s.emp2"
    result = plan(demo_registry(), data)
    assert [str(c) for c in result.changes[-2:]] == ["updated agent deploy-bot", "unchanged agent review-bot"]
    assert [type(e) for e in result.events] == [AgentUpdated]
    assert result.tokens == {}


# -- problems -----------------------------------------------------------------------------------


def test_pinned_version_with_other_content_is_refused_as_immutable() -> None:
    """Re-pinning an existing version with different content raises BundleError naming immutability."""
    data = demo_bundle()
    data["skills"][0]["actions"] = ["deploy:staging"]
    problems = problems_of(demo_registry(), data)
    assert len(problems) == 1
    assert problems[0].startswith("skills[0] (deploy).version: version 1 is already published")
    assert "immutable" in problems[0] and "publish version 3" in problems[0]


def test_pinned_policy_with_other_content_is_refused() -> None:
    """Policies are immutable too: the same pinned version with a new allow list is refused."""
    data = demo_bundle()
    data["policies"][0]["allow"] = ["deploy:staging"]
    (problem,) = problems_of(demo_registry(), data)
    assert "policies[0] (no-prod).version" in problem and "immutable" in problem


def test_skipping_versions_is_refused() -> None:
    """Pinning a version beyond latest+1 raises BundleError naming the next version."""
    data = {"org": "demo", "skills": [{"name": "deploy", "version": 5, "actions": ["a:b"]}]}
    (problem,) = problems_of(demo_registry(), data)
    assert problem == "skills[0] (deploy).version: version 5 would skip versions; the next is 3"
    with pytest.raises(BundleError, match="would skip versions; the next is 1"):
        plan(Registry(), {"org": "x", "skills": [{"name": "new", "version": 2, "actions": ["a:b"]}]})


def test_unresolved_references_are_all_reported() -> None:
    """Missing skills and policies are each reported with where they are, and nothing is planned."""
    data = {
        "org": "demo",
        "policies": [{"name": "p", "skill": "nope-v1", "allow": ["a:b"]}],
        "agents": [{"id": "bot", "anchor": "a", "skills": ["deploy-v9", "review"], "policy": "ghost"}],
    }
    assert problems_of(demo_registry(), data) == [
        "policies[0] (p).skill: no skill nope-v1 in org demo",
        "agents[0] (bot).skills[0]: no skill deploy-v9 in org demo",
        "agents[0] (bot).policy: no policy ghost in org demo",
    ]


def test_invalid_references_and_patterns_are_reported() -> None:
    """A malformed reference or action pattern is a problem, not an exception of another type."""
    data = {
        "org": "demo",
        "skills": [{"name": "bad", "actions": ["ok:fine", "no good"]}],
        "agents": [{"id": "bot", "anchor": "a", "skills": ["Deploy"], "policy": "no-prod-v1"}],
    }
    problems = problems_of(demo_registry(), data)
    assert problems[0].startswith("skills[0] (bad).actions[1]: 'no good' is not an action pattern")
    assert problems[1].startswith("agents[0] (bot).skills[0]: 'Deploy' is not a reference")


def test_policy_for_a_skill_the_agent_lacks_is_refused() -> None:
    """An agent bound to a policy that governs a skill the agent does not hold is refused."""
    data = {"org": "demo", "agents": [{"id": "bot", "anchor": "a", "skills": ["review-v1"], "policy": "no-prod-v1"}]}
    (problem,) = problems_of(demo_registry(), data)
    assert problem == ("agents[0] (bot).policy: no-prod-v1 governs skill deploy-v2, which the agent does not have")


def test_an_agent_id_of_another_org_is_a_new_agent_here() -> None:
    """Names are unique within an org: another org's deploy-bot is untouched and ours is new."""
    registry = demo_registry()
    other = {"org": "other", "skills": [{"name": "s", "actions": ["a:b"]}],
             "policies": [{"name": "p", "skill": "s", "allow": ["a:b"]}],
             "agents": [{"id": "deploy-bot", "anchor": "x", "skills": ["s"], "policy": "p"}]}
    result = plan(registry, other)
    assert result.changes[-1] == Change(op="registered", kind="agent", name="deploy-bot")
    assert result.tokens["deploy-bot"].startswith("clm_other.")
    after = apply_all(registry, result.events)
    assert after.agents[("demo", "deploy-bot")].anchor == "s.emp1"
    assert after.agents[("other", "deploy-bot")].anchor == "x"


def test_references_never_reach_into_another_org() -> None:
    """A bundle of org other cannot use demo's skills or policies: each reference is reported."""
    other = {"org": "other", "agents": [{"id": "a", "anchor": "x", "skills": ["deploy-v2"], "policy": "no-prod-v1"}]}
    assert problems_of(demo_registry(), other) == [
        "agents[0] (a).skills[0]: no skill deploy-v2 in org other",
        "agents[0] (a).policy: no policy no-prod-v1 in org other",
    ]


@pytest.mark.parametrize(
    "data",
    [
        {"org": "demo", "extra": 1},
        {"org": "demo", "skills": [{"name": "s", "actions": ["a"], "colour": "red"}]},
        {"org": "demo", "agents": [{"id": "a", "anchor": "x", "skills": [], "policy": "p", "token": "t"}]},
        {"org": 5},
        {"org": "has space"},
        {"org": "demo", "skills": "deploy"},
        {"org": "demo", "skills": [{"name": "Upper", "actions": ["a"]}]},
        {"org": "demo", "skills": [{"name": "s", "actions": "a"}]},
        {"org": "demo", "skills": [{"name": "s", "actions": ["a"], "version": 0}]},
        {"org": "demo", "skills": [{"name": "s", "actions": ["a"], "version": "1"}]},
        {"org": "demo", "policies": [{"name": "p"}]},
        {"org": "demo", "agents": [{"id": "a", "anchor": "", "skills": [], "policy": "p"}]},
        {"skills": []},
        ["org", "demo"],
        None,
    ],
)
def test_parse_bundle_rejects_unknown_fields_and_wrong_types(data: Any) -> None:
    """parse_bundle raises BundleError (code ``invalid``) with one problem for any shape it does not accept."""
    with pytest.raises(BundleError) as info:
        parse_bundle(data)
    assert info.value.code == Code.INVALID
    assert len(info.value.problems) == 1 and info.value.problems[0]


def test_parse_bundle_accepts_the_demo_bundle() -> None:
    """The shipped demo bundle is valid and keeps its entries in order."""
    bundle = parse_bundle(demo_bundle())
    assert bundle.org == "demo"
    assert [(s.name, s.version) for s in bundle.skills] == [("deploy", 1), ("deploy", 2), ("review", 1)]
    assert [a.id for a in bundle.agents] == ["deploy-bot", "review-bot"]


# -- tokens -------------------------------------------------------------------------------------


def test_agent_registered_stores_only_the_keyed_hash_of_the_token() -> None:
    """token_hash is hash_token(secret, token), and no event's canonical bytes contain a plaintext token."""
    result = plan(Registry(), demo_bundle())
    registered = {e.agent_id: e for e in result.events if isinstance(e, AgentRegistered)}
    assert set(registered) == set(result.tokens)
    for agent_id, token in result.tokens.items():
        assert registered[agent_id].token_hash == hash_token(SECRET, token)
        assert registered[agent_id].token_hash != hash_token(b"other-secret", token)
    for event in result.events:
        encoded = canonical_bytes(event)
        for token in result.tokens.values():
            assert token.encode() not in encoded
            assert token[4:].encode() not in encoded


def test_bundle_data_is_not_mutated() -> None:
    """Planning leaves the plain data it was given as it was."""
    data = demo_bundle()
    before = copy.deepcopy(data)
    plan(Registry(), data)
    assert data == before


@pytest.mark.parametrize("name", ["foo-v2", "x\n", "Upper", "-lead"])
def test_names_that_cannot_be_referenced_are_refused(name: str) -> None:
    """A skill name that would read as a versioned reference (or is otherwise invalid) is refused."""
    with pytest.raises(BundleError):
        parse_bundle({"org": "demo", "skills": [{"name": name, "actions": ["a:b"]}]})
