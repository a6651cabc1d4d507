"""A decision's reason starts with a stable category that clients and metrics read instead of the text."""

from __future__ import annotations

import pytest
from claiim_core.reasons import CATEGORIES, category, reason
from claiim_core.schemas import DecisionReply


@pytest.mark.parametrize(("text", "expected"), [
    (reason("policy", "no-prod-v1", "action explicitly denied"), "policy"),
    ("chron:unavailable -- the decision could not be recorded: timeout", "chron"),
    ("auth:rotated-token -- this token of agent a was rotated", "auth"),
    ("nonsense:x -- y", ""),
    ("no colon at all", ""),
])
def test_the_category_is_read_from_the_reason(text: str, expected: str) -> None:
    assert category(text) == expected
    reply = DecisionReply(outcome="DENY", reason=text, rule="r", chron_id="", policy="", skill="", anchor="",
                          agent_id="a", decided_at="")
    assert reply.category == expected


def test_a_reason_is_category_subject_and_text() -> None:
    assert reason("skill", "deploy-v2", "action outside the agent's skills") == (
        "skill:deploy-v2 -- action outside the agent's skills")
    assert set(CATEGORIES) == {"policy", "skill", "auth", "agent", "request", "approval", "chron", "gate"}
