"""Wire and canonical encodings round-trip, canonical bytes match the golden vectors, ids sort by time."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from claiim_core.canonical import canonical_bytes
from claiim_core.checkpoint import Signer
from claiim_core.document import PolicyDocument
from claiim_core.eventauth import (
    ControlKeyring,
    GateKey,
    GateKeyring,
    check_control,
    check_decision,
    seal_control,
    seal_decision,
)
from claiim_core.events import (
    AgentRegistered,
    AgentUpdated,
    ControlEvent,
    OrgCreated,
    PolicyPublished,
    SkillPublished,
    decode_control,
)
from claiim_core.ids import chron_id, rfc3339, ulid, ulid_time_ms
from claiim_core.schemas import CheckRequest, DecisionEvent
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

GOLDEN = Path(__file__).parent / "golden" / "canonical.json"

ACTIONS = st.from_regex(r"\A[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*\Z", fullmatch=True).filter(lambda a: len(a) <= 128)
TEXT = st.text(max_size=40)
CONTEXT = st.dictionaries(st.text(max_size=64), st.text(max_size=256), max_size=32)
RANDOMNESS = st.binary(min_size=10, max_size=10)
MAX_MS = (1 << 48) - 1


# -- golden vectors -----------------------------------------------------------------------------


def golden_decision_event() -> DecisionEvent:
    """A fixed decision; non-ASCII, a control character and unsorted context keys pin down escaping and order."""
    return DecisionEvent(
        chron_id="chr_01jd8m6z7b0000000000000000",
        decided_at="2026-11-25T21:07:30.123456Z",
        outcome="DENY",
        reason="policy:no-prod-v1 -- action explicitly denied",
        rule="deny[0]: deploy:production",
        org="demo",
        agent_id="deploy-bot",
        anchor="s.emp1",
        action="deploy:production",
        target="api-v2 \u2192 prod \u00e9t\u00e9 \"quoted\"\t\u0007",
        context={"zone": "eu-west-1", "Ticket": "CHG-42", "\u00e9": "\U0001f680"},
        request_id="req-0001",
        policy="no-prod-v1",
        skill="deploy-v2",
        gate="gate-a",
        control_seq=9,
    )


def golden_skill_published() -> SkillPublished:
    """A fixed control event, with its type tag and schema."""
    return SkillPublished(
        event_id="chr_01jd8m6z7b0000000000000001",
        at="2026-11-25T21:07:30.000000Z",
        actor="admin",
        org="demo",
        name="deploy",
        version=2,
        description="Deploys, rollbacks and health checks.",
        actions=("deploy:staging", "deploy:production", "health:check"),
        content_hash="sha256:" + "0" * 64,
    )


GOLDEN_GATE_KEY = GateKey("golden-gate", hashlib.sha256(b"claiim golden gate key").digest())
GOLDEN_CONTROL_KEY = Signer.from_seed("claiim-golden", hashlib.sha256(b"claiim golden control key").digest())
GOLDEN_PREV = 3


def golden_vectors() -> dict[str, dict[str, str]]:
    """What tests/unit/golden/canonical.json must hold, computed from the current encoder: the fixed
    events authenticated with fixed keys (a gate MAC, a control signature after stream sequence 3),
    so that another implementation can check its MACs and signatures against them."""
    sealed = [("decision_event", seal_decision(golden_decision_event(), GOLDEN_GATE_KEY), str(GOLDEN_GATE_KEY)),
              ("skill_published", seal_control(golden_skill_published(), GOLDEN_PREV, GOLDEN_CONTROL_KEY),
               str(GOLDEN_CONTROL_KEY.verifier))]
    return {key: {"canonical": data.decode("utf-8"), "sha256": hashlib.sha256(data).hexdigest(), "key": key_text}
            for key, data, key_text in sealed}


def test_golden_file_is_consistent() -> None:
    """Each golden vector is sorted, compact JSON whose sha256 is the stored hash."""
    stored = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert set(stored) == {"decision_event", "skill_published"}
    for vector in stored.values():
        data = vector["canonical"].encode("utf-8")
        assert hashlib.sha256(data).hexdigest() == vector["sha256"]
        assert data == _compact(json.loads(data))


@pytest.mark.parametrize("key", ["decision_event", "skill_published"])
def test_canonical_bytes_match_golden_vectors(key: str) -> None:
    """Canonical encoding of the fixed events equals the stored golden bytes byte for byte."""
    stored = json.loads(GOLDEN.read_text(encoding="utf-8"))[key]
    fresh = golden_vectors()[key]
    assert fresh["canonical"].encode("utf-8") == stored["canonical"].encode("utf-8")
    assert fresh["sha256"] == stored["sha256"]


def test_golden_skill_event_decodes_back() -> None:
    """The stored golden control event decodes to the fixed event, so old records stay readable."""
    stored = json.loads(GOLDEN.read_text(encoding="utf-8"))["skill_published"]
    assert replace(decode_control(stored["canonical"].encode("utf-8")), auth=None) == golden_skill_published()


def test_golden_events_verify_with_their_stored_keys() -> None:
    """The stored golden events' MAC and signature verify with the keys stored beside them."""
    stored = json.loads(GOLDEN.read_text(encoding="utf-8"))
    decision = msgspec.json.decode(stored["decision_event"]["canonical"].encode(), type=DecisionEvent)
    assert check_decision(decision, GateKeyring.parse(stored["decision_event"]["key"])) == "golden-gate"
    control = decode_control(stored["skill_published"]["canonical"].encode())
    ring = ControlKeyring.parse(stored["skill_published"]["key"])
    assert check_control(control, ring) == GOLDEN_CONTROL_KEY.verifier.label
    assert control.auth is not None and control.auth.prev == GOLDEN_PREV


# -- canonical form -----------------------------------------------------------------------------


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _assert_sorted_everywhere(data: bytes) -> None:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys), keys
        return dict(pairs)

    json.loads(data, object_pairs_hook=hook)


BMP_KEYS = st.text(alphabet=st.characters(max_codepoint=0xD7FF), max_size=10)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(BMP_KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(JSONISH)
def test_canonical_bytes_are_sorted_and_compact(value: Any) -> None:
    """For floats-free JSON values canonical_bytes equals sorted-key, whitespace-free UTF-8 JSON."""
    data = canonical_bytes(value)
    assert data == _compact(value)
    _assert_sorted_everywhere(data)


def test_canonical_bytes_have_no_insignificant_whitespace() -> None:
    """No space or newline appears outside strings in a canonical nested structure."""
    data = canonical_bytes({"b": [1, {"y": None, "x": True}], "a": {"d": "", "c": 0}})
    assert data == b'{"a":{"c":0,"d":""},"b":[1,{"x":true,"y":null}]}'


# -- round trips --------------------------------------------------------------------------------


CHECK_REQUESTS = st.builds(
    CheckRequest,
    agent_id=st.text(min_size=1, max_size=128),
    token=st.text(min_size=1, max_size=512),
    action=ACTIONS,
    target=st.text(max_size=256),
    context=CONTEXT,
    request_id=st.none() | st.text(max_size=128),
)

DECISION_EVENTS = st.builds(
    DecisionEvent,
    chron_id=st.builds(chron_id, st.integers(0, MAX_MS), RANDOMNESS),
    decided_at=st.builds(rfc3339, st.integers(0, 4_102_444_800_000_000)),
    outcome=st.sampled_from(["ALLOW", "DENY"]),
    reason=TEXT, rule=TEXT, org=TEXT, agent_id=TEXT, anchor=TEXT, action=TEXT, target=TEXT,
    context=st.dictionaries(TEXT, TEXT, max_size=5),
    request_id=st.none() | TEXT,
    policy=TEXT, skill=TEXT, gate=TEXT,
    control_seq=st.integers(0, 2**63 - 1),
)

TUPLES = st.lists(TEXT, max_size=5).map(tuple)
BASE: dict[str, Any] = {"event_id": TEXT, "at": TEXT, "actor": TEXT, "org": TEXT}
CONTROL_EVENTS: st.SearchStrategy[ControlEvent] = st.one_of(
    st.builds(OrgCreated, description=TEXT, **BASE),
    st.builds(SkillPublished, name=TEXT, version=st.integers(1, 10**6), description=TEXT, actions=TUPLES,
              content_hash=TEXT, **BASE),
    st.builds(PolicyPublished, name=TEXT, version=st.integers(1, 10**6), description=TEXT,
              document=st.builds(PolicyDocument, skill=TEXT, allow=TUPLES, deny=TUPLES), content_hash=TEXT,
              **BASE),
    st.builds(AgentRegistered, agent_id=TEXT, anchor=TEXT, description=TEXT, skills=TUPLES, policy=TEXT,
              token_hash=TEXT, **BASE),
    st.builds(AgentUpdated, agent_id=TEXT, anchor=TEXT, description=TEXT, skills=TUPLES, policy=TEXT, **BASE),
)


@given(CHECK_REQUESTS)
def test_check_request_round_trips(request: CheckRequest) -> None:
    """A valid CheckRequest encoded with msgspec.json decodes to an equal request."""
    assert msgspec.json.decode(msgspec.json.encode(request), type=CheckRequest) == request


@given(DECISION_EVENTS)
def test_decision_event_round_trips(event: DecisionEvent) -> None:
    """A DecisionEvent survives msgspec.json and canonical encoding unchanged."""
    assert msgspec.json.decode(msgspec.json.encode(event), type=DecisionEvent) == event
    assert msgspec.json.decode(canonical_bytes(event), type=DecisionEvent) == event


@given(CONTROL_EVENTS)
def test_control_events_round_trip_through_canonical_bytes(event: ControlEvent) -> None:
    """decode_control(canonical_bytes(e)) == e for every control event type, and the bytes are canonical."""
    data = canonical_bytes(event)
    decoded = decode_control(data)
    assert type(decoded) is type(event)
    assert decoded == event
    _assert_sorted_everywhere(data)
    assert data == _compact(json.loads(data))


def test_control_event_carries_its_type_tag_and_schema() -> None:
    """The canonical form of a control event names its type and the control schema."""
    data = json.loads(canonical_bytes(golden_skill_published()))
    assert (data["type"], data["schema"]) == ("skill.published", "claiim.control/1")


@pytest.mark.parametrize("data", [b"{}", b'{"type":"org.deleted"}', b"not json", b'{"type":"org.created"}'])
def test_decode_control_rejects_bad_input(data: bytes) -> None:
    """Unknown tags, missing fields and non-JSON raise msgspec errors."""
    with pytest.raises(msgspec.DecodeError):
        decode_control(data)


# -- ids ----------------------------------------------------------------------------------------


@given(st.integers(0, MAX_MS), st.integers(0, MAX_MS), RANDOMNESS, RANDOMNESS)
def test_ulids_sort_by_time(t1: int, t2: int, r1: bytes, r2: bytes) -> None:
    """A ULID from an earlier millisecond sorts before one from a later millisecond, whatever the randomness."""
    a, b = ulid(t1, r1), ulid(t2, r2)
    assert len(a) == len(b) == 26
    if t1 < t2:
        assert a < b
        assert chron_id(t1, r1) < chron_id(t2, r2)
    elif t1 == t2:
        assert (a < b) == (r1 < r2)


@given(st.integers(0, MAX_MS), RANDOMNESS)
def test_ulid_time_round_trips(unix_ms: int, randomness: bytes) -> None:
    """ulid_time_ms recovers the millisecond time from a ULID, a chron id, and their upper-case forms."""
    value = ulid(unix_ms, randomness)
    assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{26}", value)
    assert ulid_time_ms(value) == unix_ms
    assert ulid_time_ms(value.upper()) == unix_ms
    assert ulid_time_ms(chron_id(unix_ms, randomness)) == unix_ms


def test_ulid_known_vector() -> None:
    """The epoch with zero randomness is 26 zeros, and the largest time encodes as 7zzzzzzzzz."""
    assert ulid(0, bytes(10)) == "0" * 26
    assert ulid(MAX_MS, b"\xff" * 10) == "7" + "z" * 25
    assert chron_id(1, bytes(10)) == "chr_" + "0" * 9 + "1" + "0" * 16


@pytest.mark.parametrize("size", [0, 9, 11, 16])
def test_ulid_needs_ten_random_bytes(size: int) -> None:
    """Randomness of any length but 10 raises ValueError."""
    with pytest.raises(ValueError, match="10 random bytes"):
        ulid(0, bytes(size))


@pytest.mark.parametrize("unix_ms", [-1, 1 << 48])
def test_ulid_time_must_fit_48_bits(unix_ms: int) -> None:
    """A negative time or one beyond 48 bits raises ValueError."""
    with pytest.raises(ValueError, match="out of range"):
        ulid(unix_ms, bytes(10))


@pytest.mark.parametrize("value", ["", "0" * 25, "0" * 27, "chr_" + "0" * 25, "chr_"])
def test_ulid_time_ms_rejects_wrong_lengths(value: str) -> None:
    """A string that is not 26 characters after the chr_ prefix raises ValueError."""
    with pytest.raises(ValueError, match="not a ULID"):
        ulid_time_ms(value)


RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def test_rfc3339_known_values() -> None:
    """rfc3339 formats microseconds since the epoch as UTC with six fractional digits and a Z."""
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339(1) == "1970-01-01T00:00:00.000001Z"
    assert rfc3339(1_795_640_850_123_456) == "2026-11-25T21:07:30.123456Z"


@given(st.integers(0, 4_102_444_800_000_000 - 1))
def test_rfc3339_is_exact_to_the_microsecond(unix_us: int) -> None:
    """Up to the year 2100 the formatted time is exactly the instant given, in RFC 3339 form."""
    text = rfc3339(unix_us)
    assert RFC3339.fullmatch(text)
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=unix_us)
    assert datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) == expected
