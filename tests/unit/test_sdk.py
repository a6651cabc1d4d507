"""AsyncGate and Gate against a fake transport: what they send, where, and what they make of the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from claiim import (
    AsyncAdmin,
    AsyncGate,
    CheckResult,
    ClaiimError,
    Gate,
    GateUnavailableError,
    ProtocolError,
    ServiceUnavailableError,
    UnauthorizedError,
)
from claiim.transport import DEFAULT_URL, NatsTransport, resolve_url
from claiim_core.schemas import DecisionReply

TOKEN = "clm_sdk-test-token"
REPLY = DecisionReply(
    outcome="ALLOW", reason="policy:no-prod-v1 -- action allowed", rule="allow[0]: deploy:staging",
    chron_id="chr_01jd8m6z7b0000000000000000", policy="no-prod-v1", skill="deploy-v2", anchor="s.emp1",
    agent_id="deploy-bot", decided_at="2026-11-25T21:07:30.123456Z",
)


class FakeTransport:
    """Records every request and answers from ``answer`` (which may raise)."""

    def __init__(self, answer: Callable[[str, bytes], bytes]) -> None:
        self.answer = answer
        self.sent: list[tuple[str, dict[str, Any], float]] = []
        self.headers: list[dict[str, str] | None] = []
        self.closed = False

    async def request(self, subject: str, payload: bytes, timeout: float,
                      headers: dict[str, str] | None = None) -> bytes:
        self.sent.append((subject, msgspec.json.decode(payload), timeout))
        self.headers.append(headers)
        return self.answer(subject, payload)

    async def close(self) -> None:
        self.closed = True


def replying(reply: DecisionReply = REPLY) -> FakeTransport:
    return FakeTransport(lambda _s, _p: msgspec.json.encode(reply))


def unavailable() -> FakeTransport:
    """A transport that meets an outage, as NatsTransport reports one."""
    def fail(subject: str, _payload: bytes) -> bytes:
        raise ServiceUnavailableError(f"no service answers on {subject}")

    return FakeTransport(fail)


GARBAGE = [b"", b"not json", b"{}", b"[]", b'{"outcome": "MAYBE"}',
           msgspec.json.encode({**msgspec.to_builtins(REPLY), "outcome": "allow"}),
           msgspec.json.encode({**msgspec.to_builtins(REPLY), "chron_id": 5})]


# -- AsyncGate ----------------------------------------------------------------------------------


async def test_async_check_returns_the_typed_reply() -> None:
    """A valid DecisionReply from the transport comes back as an equal CheckResult."""
    async with AsyncGate("deploy-bot", TOKEN, transport=replying()) as gate:
        result = await gate.check(action="deploy:staging", target="api-v2")
    assert isinstance(result, CheckResult) and isinstance(result, DecisionReply)
    assert result == REPLY


async def test_async_check_sends_the_request_to_the_gate_subject() -> None:
    """The request carries agent id, token, action, target, context and request id, on claiim.gate.check."""
    fake = replying()
    gate = AsyncGate("deploy-bot", TOKEN, timeout=1.5, transport=fake)
    await gate.check(action="deploy:staging", target="api-v2", context={"ticket": "CHG-1"}, request_id="r-1")
    ((subject, body, timeout),) = fake.sent
    assert subject == "claiim.gate.check"
    assert body == {"agent_id": "deploy-bot", "token": TOKEN, "action": "deploy:staging", "target": "api-v2",
                    "context": {"ticket": "CHG-1"}, "request_id": "r-1"}
    assert 1.4 < timeout <= 1.5, "one attempt may use what is left of the timeout"


async def test_namespace_changes_the_subject() -> None:
    """With namespace=ns the request goes to ns.gate.check."""
    fake = replying()
    await AsyncGate("deploy-bot", TOKEN, namespace="t0a1b", transport=fake).check(action="deploy:staging")
    assert [s for s, _, _ in fake.sent] == ["t0a1b.gate.check"]
    assert fake.sent[0][1]["target"] == ""


def test_invalid_namespace_is_refused() -> None:
    """A namespace that is not a subject token is refused before anything is sent."""
    with pytest.raises(ValueError, match="namespace"):
        AsyncGate("deploy-bot", TOKEN, namespace="a.b", transport=replying())


async def test_deny_reply_is_returned_not_raised() -> None:
    """A DENY answer is a normal result the caller inspects."""
    deny = msgspec.structs.replace(REPLY, outcome="DENY", reason="auth:bad-token -- x", rule="authenticate")
    result = await AsyncGate("deploy-bot", "clm_wrong", transport=replying(deny)).check(action="deploy:staging")
    assert (result.outcome, result.rule) == ("DENY", "authenticate")


async def test_unavailable_gate_raises_and_never_allows() -> None:
    """GateUnavailableError from the transport propagates out of check, once the timeout is up, instead of any
    result; until then the same request (same request id) was tried again."""
    fake = unavailable()
    gate = AsyncGate("deploy-bot", TOKEN, timeout=0.3, transport=fake)
    with pytest.raises(GateUnavailableError, match=r"claiim\.gate\.check"):
        await gate.check(action="deploy:staging")
    assert len(fake.sent) >= 2 and len({body["request_id"] for _, body, _ in fake.sent}) == 1


async def test_every_check_carries_a_request_id_and_a_retry_repeats_it() -> None:
    """Without a request id the SDK makes one per check; after no answer it retries with the same one and returns
    the answer that then comes."""
    calls = 0

    def flaky(subject: str, _payload: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise GateUnavailableError(f"no service answers on {subject}")
        return msgspec.json.encode(REPLY)

    fake = FakeTransport(flaky)
    gate = AsyncGate("deploy-bot", TOKEN, transport=fake)
    assert await gate.check(action="deploy:staging") == REPLY
    ids = [body["request_id"] for _, body, _ in fake.sent]
    assert len(ids) == 3 and len(set(ids)) == 1 and len(ids[0]) == 24
    await gate.check(action="deploy:staging")
    assert fake.sent[-1][1]["request_id"] != ids[0], "another check, another id"


async def test_an_unrecorded_deny_is_retried_with_the_same_id_until_the_deadline() -> None:
    """DENY chron:unavailable (the gate could not record) is asked again with the same request id: the retry gets
    the decision if the first one was stored after all; when every answer is that DENY, the last is returned."""
    unrecorded = msgspec.structs.replace(REPLY, outcome="DENY", chron_id="", rule="record",
                                         reason="chron:unavailable -- the decision could not be recorded: timeout")
    answers = [unrecorded, REPLY]
    fake = FakeTransport(lambda _s, _p: msgspec.json.encode(answers.pop(0)))
    assert await AsyncGate("deploy-bot", TOKEN, transport=fake).check(action="deploy:staging") == REPLY
    assert len(fake.sent) == 2 and len({body["request_id"] for _, body, _ in fake.sent}) == 1

    always = FakeTransport(lambda _s, _p: msgspec.json.encode(unrecorded))
    assert await AsyncGate("deploy-bot", TOKEN, timeout=0.3, transport=always).check(action="x:y") == unrecorded
    assert len(always.sent) >= 2


async def test_a_refused_token_is_not_retried() -> None:
    """UnauthorizedError (NATS refused the token) comes out at once: retrying cannot help."""
    def refuse(_subject: str, _payload: bytes) -> bytes:
        raise UnauthorizedError("unauthorized: NATS refused this token")

    fake = FakeTransport(refuse)
    with pytest.raises(UnauthorizedError):
        await AsyncGate("deploy-bot", TOKEN, transport=fake).check(action="deploy:staging")
    assert len(fake.sent) == 1


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_undecodable_answer_raises_protocol_error(garbage: bytes) -> None:
    """An answer that does not decode as a DecisionReply raises ProtocolError, a ClaiimError."""
    gate = AsyncGate("deploy-bot", TOKEN, transport=FakeTransport(lambda _s, _p: garbage))
    with pytest.raises(ProtocolError, match="does not decode") as info:
        await gate.check(action="deploy:staging")
    assert isinstance(info.value, ClaiimError)


async def test_async_close_closes_the_transport() -> None:
    """Leaving the async context closes the transport."""
    fake = replying()
    async with AsyncGate("deploy-bot", TOKEN, transport=fake):
        assert not fake.closed
    assert fake.closed


# -- Gate (synchronous) -------------------------------------------------------------------------


def test_sync_check_returns_the_typed_reply_and_sends_the_request() -> None:
    """Gate.check returns the reply and sends the same request as AsyncGate, on the namespaced subject."""
    fake = replying()
    with Gate("deploy-bot", TOKEN, namespace="ns1", transport=fake) as gate:
        result = gate.check(action="deploy:staging", target="api-v2")
    assert result == REPLY
    ((subject, body, _),) = fake.sent
    assert subject == "ns1.gate.check"
    assert (body["agent_id"], body["token"], body["action"], body["target"]) == (
        "deploy-bot", TOKEN, "deploy:staging", "api-v2")
    assert fake.closed


def test_sync_unavailable_gate_raises() -> None:
    """GateUnavailableError propagates out of the synchronous client too."""
    gate = Gate("deploy-bot", TOKEN, timeout=0.3, transport=unavailable())
    try:
        with pytest.raises(GateUnavailableError):
            gate.check(action="deploy:staging")
    finally:
        gate.close()


def test_sync_garbage_raises_protocol_error() -> None:
    """An undecodable answer raises ProtocolError from the synchronous client."""
    with Gate("deploy-bot", TOKEN, transport=FakeTransport(lambda _s, _p: b"garbage")) as gate, \
            pytest.raises(ProtocolError):
        gate.check(action="deploy:staging")


def test_sync_close_is_idempotent() -> None:
    """Closing a Gate twice is harmless and closes the transport once it is done."""
    fake = replying()
    gate = Gate("deploy-bot", TOKEN, transport=fake)
    gate.close()
    gate.close()
    assert fake.closed


# -- resolve_url --------------------------------------------------------------------------------


def test_resolve_url_prefers_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit URL wins over CLAIIM_URL."""
    monkeypatch.setenv("CLAIIM_URL", "nats://env:4222")
    assert resolve_url("nats://arg:4222") == "nats://arg:4222"


def test_resolve_url_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument CLAIIM_URL is used."""
    monkeypatch.setenv("CLAIIM_URL", "nats://env:4222")
    assert resolve_url(None) == "nats://env:4222"


def test_resolve_url_defaults_to_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument or CLAIIM_URL the URL is nats://127.0.0.1:4222."""
    monkeypatch.delenv("CLAIIM_URL", raising=False)
    assert resolve_url(None) == DEFAULT_URL == "nats://127.0.0.1:4222"


def test_gate_url_uses_the_same_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """AsyncGate.url follows argument > CLAIIM_URL > default."""
    monkeypatch.setenv("CLAIIM_URL", "nats://env:4222")
    assert AsyncGate("a", TOKEN, transport=replying()).url == "nats://env:4222"
    assert AsyncGate("a", TOKEN, "nats://arg:1", transport=replying()).url == "nats://arg:1"
    monkeypatch.delenv("CLAIIM_URL")
    assert AsyncGate("a", TOKEN, transport=replying()).url == DEFAULT_URL


class _SharedClient:
    """Stands in for an open nats-py connection that someone else owns."""

    is_closed = False
    drained = False

    async def drain(self) -> None:
        self.drained = True


async def test_closing_a_transport_leaves_a_shared_connection_to_its_owner() -> None:
    shared = _SharedClient()
    transport = NatsTransport("nats://127.0.0.1:1", client=shared)  # type: ignore[arg-type]
    await transport.close()
    assert not shared.drained


async def test_an_outage_is_the_gates_for_an_agent_and_not_for_an_admin() -> None:
    """The same outage is a GateUnavailableError for Gate.check (no decision: never act) and a plain
    ServiceUnavailableError for the admin API, so that an admin tool never reports the gate as down."""
    async with AsyncGate("deploy-bot", TOKEN, timeout=0.3, transport=unavailable()) as gate:
        with pytest.raises(GateUnavailableError):
            await gate.check(action="deploy:staging")
    admin = AsyncAdmin(admin_token="cla_demo.x", transport=unavailable())
    with pytest.raises(ServiceUnavailableError) as info:
        await admin.agents()
    assert not isinstance(info.value, GateUnavailableError)
    assert info.value.diagnostics().startswith("service unavailable: no service answers on claiim.admin.query")
