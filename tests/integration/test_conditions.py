"""Conditions on the real stack: a policy whose allow rule has a CEL condition on the context, published through the
control service, decided by the gate on each check's context, explained alike, and refused at publish when its
condition does not compile."""

from __future__ import annotations

import pytest
import yaml
from claiim import AsyncGate, InvalidRequestError, NotFoundError
from claiim_core.sources import locate, yaml_lines

from tests.conftest import Stack
from tests.integration.test_decision_path import wait_in_chron

pytestmark = pytest.mark.integration
BUNDLE = """\
org: demo
skills:
  - {name: pay, version: 1, actions: ["pay:send"]}
policies:
  - name: pay
    version: 1
    skill: pay-v1
    allow:
      - action: pay:send
        when: int(context.amount_cents) < 5000
        description: small payments only
agents:
  - {id: pay-bot, anchor: f.owner, skills: [pay-v1], policy: pay-v1}
"""


@pytest.fixture
async def pay_bot(stack: Stack) -> AsyncGate:
    token = (await stack.admin.apply(yaml.safe_load(BUNDLE))).tokens["pay-bot"]
    return AsyncGate("pay-bot", token, stack.settings.url, namespace=stack.settings.namespace)


async def test_the_gate_allows_and_denies_on_the_requests_context(stack: Stack, pay_bot: AsyncGate) -> None:
    async with pay_bot as gate:
        small = await gate.check("pay:send", "acct-1", {"amount_cents": "1200"})
        large = await gate.check("pay:send", "acct-1", {"amount_cents": "90000"})
        missing = await gate.check("pay:send", "acct-1")
    assert (small.outcome, small.rule) == (
        "ALLOW", "allow[0]: pay:send if int(context.amount_cents) < 5000 -- small payments only")
    assert (large.outcome, large.reason) == ("DENY", "policy:pay-v1 -- action not in allow list")
    assert missing.outcome == "DENY"
    assert missing.reason.startswith("policy:pay-v1 -- condition of allow[0] not evaluated: no 'amount_cents'")
    row = await wait_in_chron(stack, small.chron_id)
    assert (row["outcome"], row["rule"], row["policy"]) == ("ALLOW", small.rule, "pay-v1")


async def test_explain_evaluates_the_condition_as_the_gate_does(stack: Stack, pay_bot: AsyncGate) -> None:
    small = await stack.admin.explain("pay-bot", "pay:send", "acct-1", {"amount_cents": "1200"})
    large = await stack.admin.explain("pay-bot", "pay:send", "acct-1", {"amount_cents": "90000"})
    assert (small.outcome, large.outcome) == ("ALLOW", "DENY")
    assert "allow[0] matches, but its condition is false: int(context.amount_cents) < 5000" in "\n".join(large.steps)
    await pay_bot.close()


async def test_a_condition_that_does_not_compile_is_refused_at_publish_with_its_line(stack: Stack) -> None:
    text = BUNDLE.replace("< 5000", "<")
    with pytest.raises(InvalidRequestError) as refused:
        await stack.admin.apply(yaml.safe_load(text))
    problem = refused.value.problems[0]  # and the agent that names the unpublished policy
    assert problem.startswith("policies[0] (pay).allow[0].when: line 1, column 28 of the condition: Syntax error")
    assert locate(problem, yaml_lines(text), "pay.yaml").startswith("pay.yaml:10: policies[0] (pay).allow[0].when")
    with pytest.raises(NotFoundError):  # nothing was published
        await stack.admin.policy_versions("pay")
