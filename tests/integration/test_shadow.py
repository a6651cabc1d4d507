"""Log-only candidate policy versions on the real stack: attached by an org admin without a second admin, evaluated
by the gate beside the bound version and recorded in each decision, never changing an answer, and reported."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from claiim import AsyncAdmin, AsyncGate, NotFoundError
from claiim_core.schemas import DecisionEvent

from tests.conftest import Stack
from tests.integration.test_decision_path import wait_in_chron

pytestmark = pytest.mark.integration
STRICT = {"org": "demo", "policies": [{"name": "strict", "version": 1, "skill": "deploy-v2",
                                       "allow": ["health:check"], "deny": ["deploy:*"]}]}


async def test_a_candidate_is_recorded_beside_each_decision_and_never_changes_an_answer(stack: Stack) -> None:
    await stack.admin.apply(STRICT)
    token = await stack.admin.enrol_admin("shadow-admin")
    admin = AsyncAdmin(stack.settings.url, token, org="demo", namespace=stack.settings.namespace)
    try:
        attached = await admin.set_shadow("deploy-bot", "strict")
        assert not attached.proposal_id, "a log-only candidate changes no outcome: no second admin"
        assert attached.change == "deploy-bot: strict-v1 evaluated log-only beside its bound policy"
        assert [a.shadow for a in await admin.agents() if a.agent_id == "deploy-bot"] == ["strict-v1"]
        with pytest.raises(NotFoundError):
            await admin.set_shadow("deploy-bot", "nothing-v9")

        async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                             namespace=stack.settings.namespace) as gate:
            staging = await gate.check("deploy:staging", "api-v2")
            production = await gate.check("deploy:production", "api-v2")
            explained = await admin.explain("deploy-bot", "deploy:staging", "api-v2")
            await admin.set_shadow("deploy-bot", "")
            after = await gate.check("deploy:staging", "api-v2")
        assert (staging.outcome, staging.policy, production.outcome) == ("ALLOW", "no-prod-v1", "DENY")
        stored = msgspec.json.decode((await wait_in_chron(stack, staging.chron_id))["event"], type=DecisionEvent)
        assert (stored.outcome, stored.shadow.policy, stored.shadow.outcome, stored.shadow.rule) == (
            "ALLOW", "strict-v1", "DENY", "deny[0]: deploy:*")
        assert "log-only candidate strict-v1: DENY [deny[0]: deploy:*] (not the answer)" in explained.steps
        assert explained.outcome == "ALLOW"
        unshadowed = msgspec.json.decode((await wait_in_chron(stack, after.chron_id))["event"], type=DecisionEvent)
        assert not unshadowed.shadow

        for _ in range(100):  # the three decisions reach Chron a moment after their replies
            report = await admin.shadow_report("deploy-bot")
            if report.decisions >= 3:
                break
            await asyncio.sleep(0.05)
        assert (report.decisions, dict(report.evaluated)) == (3, {"strict-v1": 2})
        (changed,) = report.changed
        assert (changed.chron_id, changed.outcome, changed.candidate_outcome) == (staging.chron_id, "ALLOW", "DENY")
        assert report.lines()[0] == ("3 decisions; 2 evaluated by strict-v1 (2); 1 would change "
                                     "(ALLOW -> DENY: 1)")
    finally:
        await admin.close()
