"""Policy rules with target patterns and descriptions: evaluation, validation, storage and explain."""

from __future__ import annotations

from typing import Any

import pytest
from claiim_core.bundle import BundleError, parse_bundle, plan_bundle
from claiim_core.decision import evaluate_agent
from claiim_core.document import PolicyDocument, Rule
from claiim_core.events import PolicyPublished
from claiim_core.explain import explain
from claiim_core.policy import check_rule, decide_policy, target_matches
from claiim_core.registry import Registry

from tests.unit.seed import apply_all, seed_registry
from tests.unit.test_access import context

DOC = PolicyDocument(
    skill="deploy-v2",
    allow=(Rule(action="deploy:*", target="staging-*", description="staging is fair game"), "health:check"),
    deny=(Rule(action="deploy:*", target="*-prod"), Rule(action="infra:destroy", description="never")),
)


@pytest.mark.parametrize(("action", "target", "outcome", "rule"), [
    ("deploy:staging", "staging-eu", "ALLOW", "allow[0]: deploy:* @ staging-* -- staging is fair game"),
    ("deploy:staging", "api-v2", "DENY", "default-deny"),
    ("deploy:staging", "staging-prod", "DENY", "deny[0]: deploy:* @ *-prod"),
    ("health:check", "anything/at:all", "ALLOW", "allow[1]: health:check"),
    ("infra:destroy", "", "DENY", "deny[1]: infra:destroy -- never"),
])
def test_targets_narrow_rules_and_deny_still_wins(action: str, target: str, outcome: str, rule: str) -> None:
    got = decide_policy("p-v1", DOC, action, target)
    assert (got[0], got[2]) == (outcome, rule)


@pytest.mark.parametrize(("pattern", "target", "expected"), [
    (None, "", True),
    (None, "x", True),
    ("api-v2", "api-v2", True),
    ("api-v2", "api-v20", False),
    ("api-*", "api-v2", True),
    ("*", "", True),
    ("repo:*/main", "repo:acme/api/main", True),
    ("repo:*/main", "repo:acme/api/dev", False),
    ("a.b", "axb", False),  # only '*' is special
    ("x*", "x\nline", True),
])
def test_target_patterns(pattern: str | None, target: str, expected: bool) -> None:
    """'*' matches any run of characters in a target, ':' and '/' included; nothing else is special."""
    assert target_matches(pattern, target) is expected


def test_a_rule_with_only_an_action_is_stored_as_a_bare_string() -> None:
    """So that ``- deploy:x`` and ``- {action: deploy:x}`` are one content and re-applying changes nothing."""
    assert check_rule(Rule(action="deploy:x")) == "deploy:x"
    assert check_rule(Rule(action="deploy:x", target="t")) == Rule(action="deploy:x", target="t")


@pytest.mark.parametrize(("rule", "message"), [
    (Rule(action="bad action"), "is not an action pattern"),
    (Rule(action="a:b", target=""), "is not a target pattern"),
    (Rule(action="a:b", target="x" * 257), "is not a target pattern"),
    (Rule(action="a:b", target="tab\there"), "is not a target pattern"),
    (Rule(action="a:b", description="d" * 513), "at most 512 characters"),
])
def test_bad_rules_are_refused(rule: Rule, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_rule(rule)


def bundle_with(allow: list[Any], deny: list[Any] | None = None) -> dict[str, Any]:
    return {"org": "demo", "policies": [{"name": "careful", "skill": "deploy-v2", "allow": allow,
                                         "deny": deny or []}]}


def test_a_bundle_publishes_targeted_rules_and_reapplying_is_a_no_op() -> None:
    registry = seed_registry()
    data = bundle_with([{"action": "deploy:staging", "target": "api-*", "description": "apis"}, "health:check"],
                       [{"action": "deploy:production"}])
    plan = plan_bundle(registry, parse_bundle(data), context())
    [event] = plan.events
    assert isinstance(event, PolicyPublished)
    assert event.document.allow == (Rule(action="deploy:staging", target="api-*", description="apis"), "health:check")
    assert event.document.deny == ("deploy:production",)
    apply_all(registry, plan.events)
    assert plan_bundle(registry, parse_bundle(data), context()).unchanged
    same = bundle_with([{"action": "deploy:staging", "target": "api-*", "description": "apis"},
                        {"action": "health:check"}], ["deploy:production"])
    assert plan_bundle(registry, parse_bundle(same), context()).unchanged


def test_bad_rules_in_a_bundle_are_reported_with_their_path() -> None:
    data = bundle_with([{"action": "deploy:staging", "target": ""}, "ok:fine", "not ok"])
    with pytest.raises(BundleError) as info:
        plan_bundle(seed_registry(), parse_bundle(data), context())
    assert [p.split(": ", 1)[0] for p in info.value.problems] == [
        "policies[0] (careful).allow[0]", "policies[0] (careful).allow[2]"]


def test_unknown_rule_keys_are_refused_when_the_bundle_is_parsed() -> None:
    """A misspelt rule key is refused where it is, naming the key it was probably meant to be."""
    with pytest.raises(BundleError, match=r"policies\[0\] \(careful\)\.allow\[0\]\.targets: unknown key 'targets' "
                                          r"\(did you mean 'target'\?"):
        parse_bundle(bundle_with([{"action": "a:b", "targets": "x"}]))


def test_explain_shows_the_target_and_the_matching_rule() -> None:
    registry: Registry = seed_registry()
    data = bundle_with([{"action": "deploy:staging", "target": "api-*"}])
    data["agents"] = [{"id": "careful-bot", "anchor": "j.smith", "skills": ["deploy-v2"], "policy": "careful"}]
    apply_all(registry, plan_bundle(registry, parse_bundle(data), context()).events)
    verdict, steps = explain(registry, "demo", "careful-bot", "deploy:staging", "api-v2")
    assert verdict is not None and verdict.outcome == "ALLOW"
    assert "on target 'api-v2': deny no match, allow matches allow[0]: deploy:staging @ api-*" in steps[-2]
    verdict, _ = explain(registry, "demo", "careful-bot", "deploy:staging", "web")
    assert verdict is not None and verdict.reason == "policy:careful-v1 -- action not in allow list"
    assert explain(registry, "other", "careful-bot", "deploy:staging")[0] is None


@pytest.mark.parametrize(("action", "target", "last_step"), [
    ("deploy:staging", "api-v2", "deny no match, allow matches allow[0]: deploy:staging @ api-*"),
    ("deploy:staging", "web", "deny no match, allow no match"),
    ("cook:dinner", "", "skill deploy-v2 -> deploy-v2: does not cover cook:dinner"),
])
def test_explain_shows_the_evaluations_own_steps_and_agrees_with_it(action: str, target: str,
                                                                     last_step: str) -> None:
    """explain's steps are the evaluator's trace: the last step before the verdict is where evaluation stopped, and
    the verdict is the one the gate's evaluator gives."""
    registry: Registry = seed_registry()
    data = bundle_with([{"action": "deploy:staging", "target": "api-*"}])
    data["agents"] = [{"id": "careful-bot", "anchor": "j.smith", "skills": ["deploy-v2"], "policy": "careful"}]
    apply_all(registry, plan_bundle(registry, parse_bundle(data), context()).events)
    verdict, steps = explain(registry, "demo", "careful-bot", action, target)
    assert steps[-2].endswith(last_step)
    assert verdict == evaluate_agent(registry, registry.agents[("demo", "careful-bot")], action, target)
    assert steps[-1] == f"=> {verdict.outcome} {verdict.reason} [{verdict.rule}]"
