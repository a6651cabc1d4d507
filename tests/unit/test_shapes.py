"""An agent, a skill and a policy each have four shapes, one per layer: what an admin writes (the bundle's spec),
what is recorded (the control event), what the gate holds (the registry state) and what an admin reads (the info).
They must say the same thing: each field they share has one name, and a definition written in a bundle comes back
unchanged through events, the registry and the read model."""

from __future__ import annotations

import dataclasses

import msgspec
from claiim_core.bundle import AgentSpec, PolicySpec, SkillSpec, parse_bundle, plan_bundle
from claiim_core.events import AgentRegistered, AgentUpdated, PolicyPublished, SkillPublished
from claiim_core.registry import AgentState, PolicyVersion, Registry, SkillVersion
from claiim_core.schemas import AgentInfo, PolicyVersionInfo, SkillVersionInfo
from claiim_core.views import agent_info, policy_info, skill_info

from tests.unit.seed import apply_all
from tests.unit.test_access import context


def names(shape: type) -> set[str]:
    if dataclasses.is_dataclass(shape):
        return {f.name for f in dataclasses.fields(shape)}
    return set(shape.__struct_fields__)  # type: ignore[attr-defined]


def test_the_shared_fields_have_one_name_in_every_shape() -> None:
    agent = names(AgentSpec) - {"id"}
    for shape in (AgentRegistered, AgentUpdated, AgentState, AgentInfo):
        assert agent <= names(shape), shape
    skill = names(SkillSpec)
    for shape in (SkillPublished, SkillVersion, SkillVersionInfo):
        assert skill <= names(shape), shape
    policy = {"name", "version", "description"}
    for shape in (PolicySpec, PolicyPublished, PolicyVersion, PolicyVersionInfo):
        assert policy <= names(shape), shape


def test_a_definition_comes_back_unchanged_through_events_registry_and_read_model() -> None:
    data = {"org": "shapes",
            "skills": [{"name": "ship", "actions": ["ship:build", "ship:*"], "description": "builds"}],
            "policies": [{"name": "careful", "skill": "ship", "description": "no releases",
                          "allow": ["ship:build", {"action": "ship:test", "target": "ci-*", "description": "CI"}],
                          "deny": ["ship:release"]}],
            "agents": [{"id": "bot", "anchor": "j.smith", "skills": ["ship"], "policy": "careful",
                        "description": "ships"}]}
    bundle = parse_bundle(data)
    registry = Registry()
    apply_all(registry, plan_bundle(registry, bundle, context()).events)

    spec = bundle.agents[0]
    info = agent_info(registry, registry.agents[("shapes", "bot")])
    assert (info.anchor, info.description, list(info.skills), info.policy) == (
        spec.anchor, spec.description, spec.skills, spec.policy)

    skill = skill_info(registry.skills[("shapes", "ship")][0])
    assert (skill.name, skill.version, skill.description, list(skill.actions)) == ("ship", 1, "builds",
                                                                                  ["ship:build", "ship:*"])
    policy = policy_info(registry.policies[("shapes", "careful")][0])
    written = data["policies"][0]
    assert (policy.name, policy.description, policy.skill) == ("careful", written["description"], "ship")
    assert list(msgspec.to_builtins(policy.allow)) == written["allow"]
    assert list(msgspec.to_builtins(policy.deny)) == ["ship:release"]


def test_a_chron_record_as_read_has_every_column_chron_stores() -> None:
    """What Chron stores of a message (its row) and what a query returns (ChronRecord) name each column alike."""
    from claiim_chron.rows import Row
    from claiim_core.schemas import ChronRecord

    assert set(Row._fields) <= set(ChronRecord.__struct_fields__)
