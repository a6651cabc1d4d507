"""The gate's pure step: any request bytes give a DecisionEvent, bad ones an explicit, named DENY."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from claiim_core.canonical import canonical_bytes
from claiim_core.ids import chron_id, rfc3339
from claiim_core.names import Names
from claiim_core.registry import Registry
from claiim_core.schemas import MAX_REQUEST_BYTES, CheckRequest, DecisionEvent
from claiim_gate.decide import Moment, decide
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.seed import DEPLOY_TOKEN, SECRET, seed_registry

NOW = Moment(unix_us=1_795_640_850_123_456, randomness=bytes(range(10)))
GATE = "gate-test"
REGISTRY = seed_registry()


def run(data: bytes, registry: Registry = REGISTRY) -> DecisionEvent:
    return decide(data, registry, SECRET, GATE, NOW)


def request(**fields: Any) -> bytes:
    body: dict[str, Any] = {"agent_id": "deploy-bot", "token": DEPLOY_TOKEN, "action": "deploy:staging"}
    body.update(fields)
    return json.dumps(body).encode()


def test_valid_request_is_evaluated_and_described() -> None:
    """A valid request for deploy:staging is allowed, and the event copies the request and the moment."""
    event = run(request(target="api-v2", context={"ticket": "CHG-1"}, request_id="r-1"))
    assert (event.outcome, event.reason, event.rule) == (
        "ALLOW", "policy:no-prod-v1 -- action allowed", "allow[0]: deploy:staging")
    assert (event.org, event.agent_id, event.anchor, event.action, event.target) == (
        "demo", "deploy-bot", "s.emp1", "deploy:staging", "api-v2")
    assert (event.context, event.request_id, event.policy, event.skill) == (
        {"ticket": "CHG-1"}, "r-1", "no-prod-v1", "deploy-v2")
    assert (event.gate, event.control_seq) == (GATE, REGISTRY.last_seq)
    assert event.chron_id == chron_id(NOW.unix_us // 1000, NOW.randomness)
    assert event.decided_at == rfc3339(NOW.unix_us) == "2026-11-25T21:07:30.123456Z"


def test_oversized_request_is_denied_unread() -> None:
    """A request over MAX_REQUEST_BYTES is denied as oversized, naming its size and the limit."""
    data = request(target="x" * MAX_REQUEST_BYTES)
    event = run(data)
    assert event.outcome == "DENY"
    assert event.reason == f"request:oversized -- {len(data)} bytes, the limit is {MAX_REQUEST_BYTES}"
    assert (event.rule, event.agent_id, event.action, event.org) == ("request", "", "", "")


def test_request_of_exactly_the_limit_is_evaluated() -> None:
    """A valid request padded to exactly MAX_REQUEST_BYTES is evaluated, one byte more is not."""
    body = request()
    exact = body + b" " * (MAX_REQUEST_BYTES - len(body))
    assert run(exact).outcome == "ALLOW"
    assert run(exact + b" ").reason.startswith("request:oversized -- ")


@pytest.mark.parametrize("data", [b"", b"not json", b"{", b'{"agent_id": "deploy-bot"', b"\xff\xfe", request() + b"}"])
def test_non_json_is_malformed(data: bytes) -> None:
    """Bytes that are not one JSON document are denied as malformed, not a JSON request object."""
    event = run(data)
    assert event.outcome == "DENY"
    assert event.reason.startswith("request:malformed -- not a JSON request object: ")
    assert event.rule == "request"


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b'"deploy:staging"',
        b"null",
        b"{}",
        request(agent_id=7),
        request(token=None),
        request(action=["deploy:staging"]),
        request(context={"a": 1}),
        request(context=[]),
        request(target=5),
        request(request_id=3),
        request(extra="field"),
        request(action="deploy staging"),
        request(action="deploy:"),
        request(action="a" * 129),
        request(agent_id=""),
        request(token=""),
        request(target="t" * 257),
        request(context={str(i): "v" for i in range(33)}),
        json.dumps({"agent_id": "deploy-bot", "action": "deploy:staging"}).encode(),
    ],
)
def test_wrong_shapes_are_malformed(data: bytes) -> None:
    """Wrong types, unknown or missing fields and out-of-bounds values are denied as malformed."""
    event = run(data)
    assert event.outcome == "DENY"
    assert event.reason.startswith("request:malformed -- ")
    assert not event.reason.startswith("request:malformed -- not a JSON request object")
    assert (event.rule, event.agent_id, event.org) == ("request", "", "")


def test_bad_token_is_denied_and_not_recorded() -> None:
    """A wrong token is denied at authentication and neither token appears in the event."""
    event = run(request(token="clm_guess-guess-guess-guess"))
    assert (event.outcome, event.rule) == ("DENY", "authenticate")
    encoded = canonical_bytes(event)
    assert b"clm_guess-guess-guess-guess" not in encoded
    assert DEPLOY_TOKEN.encode() not in encoded


def test_control_seq_is_the_registry_position() -> None:
    """control_seq records the control-stream sequence of the registry the decision used."""
    assert run(b"junk").control_seq == REGISTRY.last_seq
    assert run(b"junk", Registry()).control_seq == 0


# -- properties ---------------------------------------------------------------------------------

OTHER_TOKEN = "clm_" + "w" * 43
SHORT = st.text(max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | SHORT
JSONISH = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(SHORT, inner, max_size=5), max_leaves=25,
)
REQUESTISH = st.fixed_dictionaries(
    {
        "agent_id": st.sampled_from(["deploy-bot", "ghost"]) | JSONISH,
        "token": st.sampled_from([DEPLOY_TOKEN, OTHER_TOKEN]) | JSONISH,
        "action": st.sampled_from(["deploy:staging", "deploy:production", "health:check", "x"]) | JSONISH,
    },
    optional={
        "target": SHORT | JSONISH,
        "context": st.dictionaries(SHORT, SHORT, max_size=3) | JSONISH,
        "request_id": st.none() | SHORT | JSONISH,
        "extra": JSONISH,
    },
)


def assert_sound(data: bytes, event: DecisionEvent) -> None:
    """The event is a DENY unless ``data`` is a valid request of deploy-bot with its token; no token leaks."""
    assert isinstance(event, DecisionEvent)
    assert event.outcome in ("ALLOW", "DENY")
    if event.outcome == "ALLOW":
        parsed = msgspec.json.decode(data, type=CheckRequest)
        assert (parsed.agent_id, parsed.token) == ("deploy-bot", DEPLOY_TOKEN)
    encoded = canonical_bytes(event)
    assert DEPLOY_TOKEN.encode() not in encoded
    assert OTHER_TOKEN.encode() not in encoded
    assert event.gate == GATE


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_always_get_a_deny(data: bytes) -> None:
    """Arbitrary bytes never raise and (barring a valid request with the right token) are denied."""
    assert_sound(data, run(data))


@given(JSONISH)
def test_arbitrary_json_values_always_get_a_decision(value: Any) -> None:
    """Any JSON value gives a DecisionEvent; only a valid request with the right token can be allowed."""
    data = json.dumps(value).encode()
    assert_sound(data, run(data))


@given(REQUESTISH)
def test_request_like_objects_always_get_a_sound_decision(value: dict[str, Any]) -> None:
    """Near-requests with mixed valid and invalid fields never raise and never leak the token."""
    data = json.dumps(value).encode()
    event = run(data)
    assert_sound(data, event)
    if value.get("token") != DEPLOY_TOKEN:
        assert event.outcome == "DENY"


# -- a trailing newline: the validating patterns end with \Z, not '$' (which also matches before one) ---


def test_decision_subject_never_carries_a_newline() -> None:
    """Whatever agent id a request names, the decision subject it is published on has no whitespace."""
    event = run(request(agent_id="deploy-bot\n"))
    assert event.outcome == "DENY"
    subject = Names().decision_subject(event.org, event.agent_id, event.outcome)
    assert not re.search(r"[ \t\r\n]", subject), subject


def test_action_with_trailing_newline_is_malformed() -> None:
    """An action with a trailing newline is not a valid action and is denied as malformed."""
    event = run(request(action="deploy:staging\n"))
    assert event.reason.startswith("request:malformed -- ")
