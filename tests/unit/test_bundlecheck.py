"""A bundle's problems are said in words, every one at once, each at the line of the file it is about."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
import yaml
from claiim_core.bundle import AgentSpec, Bundle, BundleError, PolicySpec, SkillSpec, parse_bundle
from claiim_core.bundlecheck import AGENT, POLICY, RULE_KEYS, SECTIONS, SKILL, bundle_problems
from claiim_core.document import Rule
from claiim_core.sources import locate, yaml_lines
from claiim_server.stack import demo_bundle
from hypothesis import given, settings
from hypothesis import strategies as st

SEVERAL = """\
org: demo
skills:
  - name: deploy
    actions: [deploy:staging, "deploy::prod"]
    acions: []
policies:
  - name: no-prod
    skill: deploy
    allow:
      - deploy:staging
      - {action: deploy:staging, ttl: 60}
    deny: deploy:production
agents:
  - id: deploy bot
    anchor: alice
    skills: [deploy]
    policy: no-prod
  - id: review-bot
    skills: [Review]
    policy: no-prod
"""


def located(text: str) -> list[str]:
    with pytest.raises(BundleError) as info:
        parse_bundle(yaml.safe_load(text))
    lines = yaml_lines(text)
    return [locate(problem, lines, "bundle.yaml") for problem in info.value.problems]


def test_every_problem_is_listed_with_its_line_in_words() -> None:
    """An unknown key, a bad action pattern, a ttl on an allow rule, a rule list given as text, an agent id with a
    space, a missing anchor and a bad reference are each one sentence at their own FILE:LINE, with no schema terms."""
    assert located(SEVERAL) == [
        "bundle.yaml:5: skills[0] (deploy).acions: unknown key 'acions' (did you mean 'actions'? a skill has name, "
        "actions, description, version)",
        "bundle.yaml:4: skills[0] (deploy).actions[1]: 'deploy::prod' is not an action pattern: segments of "
        "[A-Za-z0-9_.-] joined by ':', with '*' standing for any characters inside one segment",
        "bundle.yaml:11: policies[0] (no-prod).allow[1]: only approve rules have a ttl or an approver",
        "bundle.yaml:12: policies[0] (no-prod).deny: must be a list of rules, not text",
        "bundle.yaml:14: agents[0] (deploy bot).id: agent id 'deploy bot' may hold only letters, digits, '_' and '-' "
        "(1 to 64)",
        "bundle.yaml:18: agents[1] (review-bot): an agent needs anchor (the accountable human)",
        "bundle.yaml:19: agents[1] (review-bot).skills[0]: 'Review' is not a reference: use NAME (latest) or NAME-vN "
        "(pinned), NAME made of a-z, 0-9, '-' and '_'",
    ]


@pytest.mark.parametrize(("data", "problem"), [
    ({"org": "demo", "extra": 1}, "extra: unknown key 'extra' (a bundle has org, skills, policies, agents)"),
    ({"org": "demo", "agent": []}, "agent: unknown key 'agent' (did you mean 'agents'? a bundle has org, skills, "
                                   "policies, agents)"),
    ({"org": 5}, "org: org must be text, not a number"),
    ({"org": "has space"}, "org: org 'has space' may hold only letters, digits, '_' and '-' (1 to 64)"),
    ({"skills": []}, "org: a bundle needs org (the org it applies to)"),
    (["org", "demo"], "a bundle is a mapping with org, skills, policies and agents; not a list"),
    ({"org": "demo", "skills": "deploy"}, "skills: must be a list of entries (each a skill), not text"),
    ({"org": "demo", "skills": [{"name": "Upper", "actions": ["a"]}]},
     "skills[0] (Upper).name: skill name 'Upper' may hold only a-z, 0-9, '_' and '-' (at most 63, starting with a "
     "letter or digit, not ending in -vN, which reads as a version)"),
    ({"org": "demo", "skills": [{"name": "s", "actions": ["a"], "version": "1"}]},
     "skills[0] (s).version: version must be a whole number from 1, not '1'"),
    ({"org": "demo", "policies": [{"name": "p"}]}, "policies[0] (p): a policy needs skill (the skill it governs, "
                                                   "NAME or NAME-vN)"),
    ({"org": "demo", "policies": [{"name": "p", "skill": "s", "approve": [{"action": "a", "approver": "bob"}]}]},
     "policies[0] (p).approve[0].approver: approver is anchor or admins, not 'bob'"),
    ({"org": "demo", "policies": [{"name": "p", "skill": "s", "deny": [{"action": "a", "tagret": "x"}]}]},
     "policies[0] (p).deny[0].tagret: unknown key 'tagret' (did you mean 'target'? a rule has action, target, "
     "description, when, ttl, approver)"),
    ({"org": "demo", "policies": [{"name": "p", "skill": "s", "deny": [{"action": "a", "target": 7}]}]},
     "policies[0] (p).deny[0].target: target must be text, not a number"),
    ({"org": "demo", "agents": [{"id": "a", "anchor": "", "skills": [], "policy": "p"}]},
     "agents[0] (a).anchor: anchor must be 1 to 128 characters long (it has 0)"),
    ({"org": "demo", "agents": [5]}, "agents[0]: an agent is a mapping with id, anchor, skills, policy, description; "
                                     "not a number"),
])
def test_each_problem_is_one_sentence(data: Any, problem: str) -> None:
    """Each kind of problem reads as a sentence that names the fix, after the path of what it is about."""
    assert bundle_problems(data) == [problem]


def test_a_valid_bundle_has_no_problems() -> None:
    """The shipped demo bundle, with every kind of entry, has none, so the check adds no false alarm."""
    assert bundle_problems(demo_bundle()) == []


def test_the_check_knows_exactly_the_keys_the_bundle_accepts() -> None:
    """The key tables equal the fields of the structures a bundle is decoded into, so neither can drift."""
    assert set(SECTIONS) == set(Bundle.__struct_fields__) - {"org"}
    assert (set(SKILL), set(POLICY), set(AGENT)) == (set(SkillSpec.__struct_fields__),
                                                     set(PolicySpec.__struct_fields__),
                                                     set(AgentSpec.__struct_fields__))
    assert set(RULE_KEYS) == set(Rule.__struct_fields__)


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.text(max_size=8), st.sampled_from(
    ["deploy-v2", "deploy:staging", "Bad Name", "a b", "anchor"]), st.lists(st.sampled_from(["a:b", "deploy", 1]),
                                                                              max_size=2), st.just({"action": "a:b"}))


KEYS = ["org", "name", "id", "actions", "skill", "allow", "deny", "approve", "anchor", "skills", "policy",
        "description", "version", "colour"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", *SECTIONS]), st.integers(0, 3), st.sampled_from(KEYS), VALUES),
                min_size=1, max_size=3))
def test_a_bundle_without_problems_always_decodes(changes: list[tuple[str, int, str, Any]]) -> None:
    """Whatever values a bundle's keys are given, one the check finds no problem in decodes, and one that does not
    decode is refused with problems in words: the words replace the decoder's complaints and miss none of them."""
    data: Any = copy.deepcopy(demo_bundle())
    for section, i, key, value in changes:
        entries = data.get(section) if section else None
        target = entries[i % len(entries)] if isinstance(entries, list) and entries else data
        if isinstance(target, dict):
            target[key] = copy.deepcopy(value)
    problems = bundle_problems(data)
    try:
        msgspec.convert(data, Bundle)
    except msgspec.ValidationError:
        with pytest.raises(BundleError) as info:
            parse_bundle(data)
        assert info.value.problems == problems != []
        assert not any("Expected `" in p or "- at `$" in p for p in problems)
    else:
        assert parse_bundle(data) is not None
