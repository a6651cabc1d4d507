"""Rules' conditions (``when``): CEL over the request, evaluated the same way wherever a policy decides, and a
condition that cannot be evaluated is a DENY naming its rule, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from claiim_core.bundle import BundleError, PlanContext, parse_bundle, plan_bundle
from claiim_core.conditions import ConditionError, Facts
from claiim_core.document import PolicyDocument, Rule
from claiim_core.policy import check_rule, decide_policy, rule_text
from claiim_core.policytest import DocumentError, parse_cases, parse_policy, run_cases
from claiim_core.registry import Registry
from claiim_runtime.conditions import CelConditions

CEL = CelConditions()
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PAY = PolicyDocument(skill="pay-v1", deny=(Rule(action="pay:send", when="target.startsWith('offshore-')"),),
                     allow=(Rule(action="pay:send", when="int(context.amount_cents) < 5000"),
                            Rule(action="pay:send", when="anchor == 'cfo' && time.getHours() < 18"), "pay:quote"))


def facts(context: dict[str, str] | None = None, target: str = "acct-1", anchor: str = "s.emp1",
          time: datetime = NOON) -> Facts:
    return Facts("pay:send", target, context or {}, "pay-bot", anchor, time)


def decide(f: Facts, doc: PolicyDocument = PAY) -> tuple[str, str, str]:
    return decide_policy("pay-v1", doc, f.action, f.target, facts=f, conditions=CEL)


def test_an_allow_rule_applies_only_when_its_condition_holds() -> None:
    assert decide(facts({"amount_cents": "1200"})) == (
        "ALLOW", "policy:pay-v1 -- action allowed", "allow[0]: pay:send if int(context.amount_cents) < 5000")
    outcome, _, rule = decide(facts({"amount_cents": "90000"}, anchor="cfo"))
    assert (outcome, rule) == ("ALLOW", "allow[1]: pay:send if anchor == 'cfo' && time.getHours() < 18")
    evening = facts({"amount_cents": "90000"}, anchor="cfo", time=NOON.replace(hour=19))
    assert decide(evening) == ("DENY", "policy:pay-v1 -- action not in allow list", "default-deny")


def test_a_deny_rule_with_a_condition_wins_when_it_holds() -> None:
    outcome, reason, rule = decide(facts({"amount_cents": "100"}, target="offshore-9"))
    assert (outcome, reason) == ("DENY", "policy:pay-v1 -- action explicitly denied")
    assert rule.startswith("deny[0]: pay:send if target.startsWith")


@pytest.mark.parametrize(("context", "why"), [
    ({}, "no 'amount_cents' in the request"),
    ({"amount_cents": "lots"}, "RuntimeError"),
])
def test_a_condition_that_cannot_be_evaluated_is_a_deny_naming_its_rule(context: dict[str, str], why: str) -> None:
    outcome, reason, rule = decide(facts(context))
    assert outcome == "DENY" and reason.startswith("policy:pay-v1 -- condition of allow[0] not evaluated: ")
    assert why in reason and rule.startswith("allow[0]: pay:send")


def test_a_condition_that_is_not_a_bool_is_a_deny() -> None:
    doc = PolicyDocument(skill="pay-v1", allow=(Rule(action="pay:send", when="context.amount_cents"),))
    outcome, reason, _ = decide(facts({"amount_cents": "5"}), doc)
    assert outcome == "DENY" and "not true or false" in reason


def test_without_an_evaluator_a_conditional_rule_denies() -> None:
    f = facts({"amount_cents": "1"})
    outcome, reason, _ = decide_policy("pay-v1", PAY, f.action, f.target, facts=f)
    assert outcome == "DENY" and "not evaluated here" in reason
    assert decide_policy("pay-v1", PAY, "pay:quote", "x")[0] == "ALLOW", "unconditional rules need no evaluator"


def test_a_trace_says_which_conditions_were_false() -> None:
    steps: list[str] = []
    f = facts({"amount_cents": "90000"})
    decide_policy("pay-v1", PAY, f.action, f.target, steps, facts=f, conditions=CEL)
    assert "allow[0] matches, but its condition is false: int(context.amount_cents) < 5000" in steps


@pytest.mark.parametrize(("expression", "why"), [
    ("int(context.amount <", "line 1, column 21 of the condition: Syntax error"),
    ("amount < 5", "unknown variable amount"),
])
def test_a_condition_is_checked_when_it_is_compiled(expression: str, why: str) -> None:
    with pytest.raises(ConditionError, match=why):
        CEL.check(expression)


def test_a_rule_keeps_its_condition_and_shows_it() -> None:
    rule = Rule(action="pay:send", when="has(context.ticket)")
    assert check_rule(rule) == rule and rule_text(rule) == "pay:send if has(context.ticket)"
    with pytest.raises(ValueError, match="condition"):
        check_rule(Rule(action="pay:send", when="  "))


def test_publishing_a_policy_with_a_malformed_condition_names_the_rule() -> None:
    bundle = parse_bundle({"org": "acme", "skills": [{"name": "pay", "actions": ["pay:send"]}],
                           "policies": [{"name": "pay", "skill": "pay-v1",
                                         "allow": [{"action": "pay:send", "when": "int(context.amount <"}]}]})
    ctx = PlanContext(actor="alice", now="2026-11-27T12:00:00Z", new_id=lambda: "chr_1",
                      new_token=lambda kind, org: f"clm_{org}.x", token_secret=b"s" * 32, conditions=CEL)
    with pytest.raises(BundleError) as refused:
        plan_bundle(Registry(), bundle, ctx)
    assert refused.value.problems == [
        "policies[0] (pay).allow[0].when: line 1, column 21 of the condition: Syntax error: mismatched input '<EOF>' "
        "expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, "
        "BYTES, IDENTIFIER}"]


POLICY = """\
skill: pay-v1
allow:
  - action: pay:send
    when: int(context.amount_cents) < 5000
"""
CASES = """\
- {action: pay:send, context: {amount_cents: "1200"}, expect: ALLOW}
- {action: pay:send, context: {amount_cents: "9000"}, expect: DENY, rule: default-deny}
- {action: pay:send, expect: DENY, reason: "condition of allow[0] not evaluated", time: "2026-11-27T10:00:00Z"}
"""


def test_policy_test_evaluates_conditions_as_the_gate_does() -> None:
    policy = parse_policy(POLICY, "pay.yaml", CEL)
    results = run_cases(policy.label, policy.document, parse_cases(CASES, "cases.yaml"), CEL)
    assert [(r.passed, r.outcome) for r in results] == [(True, "ALLOW"), (True, "DENY"), (True, "DENY")]


def test_policy_test_names_the_file_line_and_column_of_a_malformed_condition() -> None:
    with pytest.raises(DocumentError) as refused:
        parse_policy(POLICY.replace("< 5000", "<"), "pay.yaml", CEL)
    assert refused.value.problems[0].startswith("pay.yaml:3: allow: when: line 1, column 28 of the condition: ")
