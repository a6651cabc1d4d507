"""W3C trace context: which traceparent headers count, how the SDK sends the caller's, and how the trace id
rides in a decision (under its MAC) into Chron's row, without changing a decision that has none."""

from __future__ import annotations

import threading

import msgspec
import pytest
from claiim import AsyncAdmin, AsyncGate, Gate, InvalidRequestError
from claiim_chron.rows import decision_row
from claiim_core.canonical import canonical_bytes
from claiim_core.eventauth import AuthError, GateKey, GateKeyring, Trusted, check_decision, seal_decision
from claiim_core.registry import Registry
from claiim_core.schemas import ChronResult, DecisionEvent
from claiim_core.tracecontext import parse_traceparent, trace_id_of
from claiim_gate.decide import Moment, decide
from msgspec import UNSET
from msgspec.structs import replace
from opentelemetry.sdk.trace import TracerProvider

from tests.unit.test_chron_search import Recorder
from tests.unit.test_eventauth import decision
from tests.unit.test_sdk import TOKEN, replying

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"
KEY = GateKey("gate-a", bytes(range(32)))


@pytest.mark.parametrize("header", [VALID, f"00-{TRACE}-{SPAN}-00", f" {VALID} ",
                                    f"01-{TRACE}-{SPAN}-01-later-fields"])
def test_a_valid_traceparent_gives_its_trace_and_parent_ids(header: str) -> None:
    assert parse_traceparent(header) == (TRACE, SPAN)
    assert trace_id_of(header) == TRACE


@pytest.mark.parametrize("header", [
    None, "", "garbage", VALID.upper(), f"ff-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01-more",
    f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE[:-1]}-{SPAN}-01", f"00-{TRACE}-{SPAN}-1",
    f"00_{TRACE}_{SPAN}_01", f"00-{TRACE}-{SPAN}-0x"])
def test_an_invalid_traceparent_is_ignored(header: str | None) -> None:
    """The specification's rules: lowercase hex, no version ff, nothing after version 00's four fields, no
    all-zero id."""
    assert parse_traceparent(header) is None and trace_id_of(header) is None


# -- the SDK -------------------------------------------------------------------------------------


async def test_a_check_outside_any_span_sends_no_trace_headers() -> None:
    fake = replying()
    await AsyncGate("deploy-bot", TOKEN, transport=fake).check("deploy:staging")
    assert fake.headers == [None]


async def test_a_check_inside_a_span_sends_that_spans_traceparent() -> None:
    """With opentelemetry-api installed the check carries the caller's current span, as W3C traceparent."""
    tracer = TracerProvider().get_tracer("agent")
    fake = replying()
    with tracer.start_as_current_span("tool call") as span:
        await AsyncGate("deploy-bot", TOKEN, transport=fake).check("deploy:staging")
    context = span.get_span_context()
    (headers,) = fake.headers
    assert headers is not None and parse_traceparent(headers["traceparent"]) == (
        f"{context.trace_id:032x}", f"{context.span_id:016x}")


def test_the_sync_gate_sends_the_calling_threads_span() -> None:
    """Gate runs its loop in another thread; the trace context is still the caller's."""
    tracer = TracerProvider().get_tracer("agent")
    fake = replying()
    with Gate("deploy-bot", TOKEN, transport=fake) as gate, tracer.start_as_current_span("tool call") as span:
        gate.check("deploy:staging")
        assert threading.current_thread() is threading.main_thread()
    (headers,) = fake.headers
    assert headers is not None and trace_id_of(headers["traceparent"]) == f"{span.get_span_context().trace_id:032x}"


async def test_a_given_traceparent_is_sent_and_an_invalid_one_refused_before_sending() -> None:
    fake = replying()
    gate = AsyncGate("deploy-bot", TOKEN, transport=fake)
    await gate.check("deploy:staging", traceparent=VALID)
    assert fake.headers == [{"traceparent": VALID}]
    with pytest.raises(ValueError, match="not a W3C traceparent"):
        await gate.check("deploy:staging", traceparent="00-abc")
    assert len(fake.sent) == 1


async def test_an_invalid_trace_id_search_is_refused_by_the_sdk() -> None:
    transport = Recorder(ChronResult())
    admin = AsyncAdmin("nats://x:4222", "t", org="demo", transport=transport)
    with pytest.raises(InvalidRequestError, match="32 lowercase hex"):
        await admin.chron_list(trace_id=TRACE.upper())
    assert transport.sent == []


# -- the decision ---------------------------------------------------------------------------------


def test_a_decision_without_a_trace_encodes_as_before() -> None:
    """No trace id: no field at all (not null), so the bytes and MAC of every earlier decision still check."""
    untraced = decision()
    assert untraced.trace_id is UNSET and b"trace_id" not in canonical_bytes(untraced)
    traced = replace(untraced, trace_id=TRACE)
    assert canonical_bytes(traced) == canonical_bytes(untraced)[:-1] + f',"trace_id":"{TRACE}"}}'.encode()


def test_the_trace_id_is_under_the_decisions_mac() -> None:
    ring = GateKeyring([Trusted(KEY)])
    sealed = msgspec.json.decode(seal_decision(decision(trace_id=TRACE), KEY), type=DecisionEvent)
    assert sealed.trace_id == TRACE and check_decision(sealed, ring) == "gate-a"
    for changed in (replace(sealed, trace_id="1" * 32), replace(sealed, trace_id=UNSET)):
        with pytest.raises(AuthError):
            check_decision(changed, ring)


def test_a_stored_decision_with_a_malformed_trace_id_does_not_decode() -> None:
    data = canonical_bytes(decision()).replace(b'"target"', b'"trace_id":"XYZ","target"')
    with pytest.raises(msgspec.ValidationError, match="trace_id"):
        msgspec.json.decode(data, type=DecisionEvent)


def test_the_gate_records_the_trace_id_it_is_given_and_chron_stores_it_in_its_column() -> None:
    request = msgspec.json.encode({"agent_id": "nobody", "token": "clm_x", "action": "deploy:staging"})
    moment = Moment(1_780_000_000_000_000, bytes(10))
    traced = decide(request, Registry(), b"s" * 32, "gate-1", moment, TRACE)
    untraced = decide(request, Registry(), b"s" * 32, "gate-1", moment)
    assert traced.outcome == untraced.outcome == "DENY" and traced.reason == untraced.reason
    assert traced.trace_id == TRACE and untraced.trace_id is UNSET
    assert decision_row("d", 1, "s", canonical_bytes(traced)).trace_id == TRACE
    assert decision_row("d", 2, "s", canonical_bytes(untraced)).trace_id is None
