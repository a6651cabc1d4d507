"""Token rotation with a grace period: the old token is accepted until the grace ends at the decision
time it is given, then denied as rotated out; immediate rotation stays the default."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from claiim_auth.grants import Denied, grant
from claiim_auth.jwt import AuthRequest, user_jwt
from claiim_auth.nkeys import PREFIX_ACCOUNT, KeyPair
from claiim_core.bundle import PlanContext
from claiim_core.canonical import canonical_bytes
from claiim_core.commands import CommandError, plan_agent_command
from claiim_core.decision import Verdict, authenticate_agent, evaluate
from claiim_core.events import AgentTokenRotated, ControlEvent
from claiim_core.names import Names
from claiim_core.registry import Registry
from claiim_core.schemas import AgentCommand, CheckRequest
from claiim_core.tokens import check_token, format_token, hash_token
from claiim_core.views import agent_info

from tests.unit.seed import DEPLOY_TOKEN, SECRET, seed_registry

ROTATED_AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW_TEXT = "2026-11-27T12:00:00.000000Z"
NEW_TOKEN = format_token("agent", "demo", bytes([7]) * 32)


def rotate(registry: Registry, grace: int = 0, token: str = NEW_TOKEN, op: str = "rotate-token") -> AgentTokenRotated:
    ctx = PlanContext(actor="alice", now=NOW_TEXT, new_id=lambda: "chr_rot", token_secret=SECRET,
                      new_token=lambda kind, org: token)
    cmd = msgspec.convert({"admin_token": "", "op": op, "agent_id": "deploy-bot", "grace": grace}, AgentCommand)
    event, _ = plan_agent_command(registry, "demo", cmd, ctx)
    registry.apply(registry.last_seq + 1, "rot", event)
    assert isinstance(event, AgentTokenRotated)
    return event


def reason_at(registry: Registry, token: str, at: datetime | None) -> str:
    found = authenticate_agent(registry, "deploy-bot", token, SECRET, now=at)
    return "ok" if not isinstance(found, Verdict) else found.reason


def test_the_old_token_is_accepted_until_the_grace_ends_then_denied_as_rotated() -> None:
    """With a 10-minute grace the old and the new token both authenticate before the deadline; at and
    after it the old one is denied auth:rotated-token."""
    registry = seed_registry()
    event = rotate(registry, grace=600)
    assert event.grace_until == "2026-11-27T12:10:00.000000Z"
    assert agent_info(registry, registry.agents[("demo", "deploy-bot")]).grace_until == event.grace_until
    before, deadline = ROTATED_AT + timedelta(minutes=9, seconds=59), ROTATED_AT + timedelta(minutes=10)
    assert reason_at(registry, DEPLOY_TOKEN, before) == "ok"
    assert reason_at(registry, NEW_TOKEN, before) == "ok"
    for later in (deadline, deadline + timedelta(days=1)):
        assert reason_at(registry, DEPLOY_TOKEN, later).startswith("auth:rotated-token")
        assert reason_at(registry, NEW_TOKEN, later) == "ok"
    request = CheckRequest(agent_id="deploy-bot", token=DEPLOY_TOKEN, action="deploy:staging", target="api-v2")
    assert evaluate(registry, request, SECRET, now=before).outcome == "ALLOW"
    assert evaluate(registry, request, SECRET, now=deadline).reason.startswith("auth:rotated-token")
    assert evaluate(registry, request, SECRET).reason.startswith("auth:rotated-token"), "no time: no grace"


def test_rotation_is_immediate_by_default_and_its_event_keeps_its_old_bytes() -> None:
    """Without a grace the old token is denied at once, and the event encodes no grace field at all (its
    signed bytes are those of an event from before grace periods existed); such bytes decode to UNSET."""
    registry = seed_registry()
    event = rotate(registry)
    assert reason_at(registry, DEPLOY_TOKEN, ROTATED_AT).startswith("auth:rotated-token")
    assert b"grace_until" not in canonical_bytes(event)
    decoded = msgspec.json.decode(canonical_bytes(event), type=ControlEvent)
    assert decoded == event and decoded.grace_until is msgspec.UNSET


def test_a_later_rotation_or_a_revocation_ends_the_grace() -> None:
    """Only the token just rotated out keeps a grace: a second rotation or a revocation (a leak) ends
    the first one's grace at once."""
    during = ROTATED_AT + timedelta(minutes=1)
    registry = seed_registry()
    rotate(registry, grace=600)
    second = format_token("agent", "demo", bytes([8]) * 32)
    rotate(registry, grace=600, token=second)
    assert reason_at(registry, DEPLOY_TOKEN, during).startswith("auth:rotated-token")
    assert reason_at(registry, NEW_TOKEN, during) == "ok"
    ctx = PlanContext(actor="alice", now=NOW_TEXT, new_id=lambda: "chr_rev", token_secret=SECRET,
                      new_token=lambda kind, org: "")
    revoke, _ = plan_agent_command(registry, "demo", AgentCommand(admin_token="", op="revoke-token",
                                                                  agent_id="deploy-bot"), ctx)
    registry.apply(registry.last_seq + 1, "rev", revoke)
    assert reason_at(registry, NEW_TOKEN, during).startswith("auth:rotated-token")
    assert reason_at(registry, second, during).startswith("auth:revoked-token")


def test_only_rotation_takes_a_grace_and_it_is_bounded() -> None:
    """A grace on another command is refused; one longer than 7 days does not decode."""
    with pytest.raises(CommandError, match="only rotate-token"):
        rotate(seed_registry(), grace=60, op="suspend")
    with pytest.raises(msgspec.ValidationError):
        rotate(seed_registry(), grace=7 * 86400 + 1)


def test_check_token_compares_the_deadline_with_the_time_given() -> None:
    """check_token says "grace" only strictly before the deadline, and never without a time."""
    old = hash_token(SECRET, DEPLOY_TOKEN)
    retired = (("x" * 64, "revoked", ""), (old, "rotated", "2026-11-27T12:10:00Z"))
    assert check_token(SECRET, DEPLOY_TOKEN, "", retired, ROTATED_AT) == "grace"
    assert check_token(SECRET, DEPLOY_TOKEN, "", retired, ROTATED_AT + timedelta(minutes=10)) == "rotated"
    assert check_token(SECRET, DEPLOY_TOKEN, "", retired, None) == "rotated"


def test_nats_admits_the_old_token_during_the_grace_with_an_expiring_user() -> None:
    """The auth callout admits the old token before the deadline, with a user JWT that expires at the
    deadline; after it, the old token gets no connection."""
    registry = seed_registry()
    rotate(registry, grace=600)
    names = Names("claiim")
    granted = grant(registry, SECRET, "op-token", names, "deploy-bot", DEPLOY_TOKEN, ROTATED_AT)
    deadline = ROTATED_AT + timedelta(minutes=10)
    assert granted.expires == int(deadline.timestamp())
    assert grant(registry, SECRET, "op-token", names, "deploy-bot", NEW_TOKEN, ROTATED_AT).expires is None
    with pytest.raises(Denied, match="rotated token"):
        grant(registry, SECRET, "op-token", names, "deploy-bot", DEPLOY_TOKEN, deadline)
    with pytest.raises(Denied, match="rotated token"):
        grant(registry, SECRET, "op-token", names, "deploy-bot", DEPLOY_TOKEN)
    issuer = KeyPair(PREFIX_ACCOUNT, bytes(32))
    request = AuthRequest("S", "n1", "U", 1, "127.0.0.1", "deploy-bot", DEPLOY_TOKEN, "")
    body = user_jwt(request, granted.name, "$G", granted.permissions, issuer, 1, granted.expires).split(".")[1]
    claims = msgspec.json.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert claims["exp"] == int(deadline.timestamp())
