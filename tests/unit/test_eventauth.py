"""Authenticated events in the pure core: a MAC or signature that any change, another key, another
subject, another place in the stream or a revoked key breaks."""

from __future__ import annotations

import base64
import hmac
import secrets

import msgspec
import pytest
from claiim_core.canonical import canonical_bytes
from claiim_core.checkpoint import Signer
from claiim_core.eventauth import (
    DECISION_DOMAIN,
    AuthError,
    ControlKeyring,
    GateKey,
    GateKeyring,
    KeyFormatError,
    Trusted,
    check_control,
    check_decision,
    open_control,
    open_decision,
    seal_control,
    seal_decision,
)
from claiim_core.events import AgentSuspended, ControlEvent, decode_control
from claiim_core.names import Names
from claiim_core.schemas import DecisionEvent, EventAuth
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

NAMES = Names("claiim")
KEY = GateKey("gate-a", bytes(range(32)))
RING = GateKeyring([Trusted(KEY)])
CONTROL = Signer.from_seed("claiim-control", bytes(32))
CONTROLS = ControlKeyring([Trusted(CONTROL.verifier)])


def decision(**changes: object) -> DecisionEvent:
    base = DecisionEvent(chron_id="chr_01test", decided_at="2026-11-27T10:00:00.000000Z", outcome="DENY",
                         reason="policy:no-prod-v1 -- action explicitly denied", rule="deny[0]", org="demo",
                         agent_id="deploy-bot", anchor="s.emp1", action="deploy:production", target="prod-db",
                         context={"ticket": "CHG-1"}, request_id=None, policy="no-prod-v1", skill="deploy-v2",
                         gate="gate-1", control_seq=9)
    return replace(base, **changes)


def suspension(**changes: object) -> AgentSuspended:
    return replace(AgentSuspended(event_id="chr_01ctl", at="2026-11-27T10:00:00.000000Z", actor="alice", org="demo",
                                  agent_id="deploy-bot", reason="incident"), **changes)


def sealed_decision(event: DecisionEvent | None = None, key: GateKey = KEY) -> DecisionEvent:
    return msgspec.json.decode(seal_decision(event or decision(), key), type=DecisionEvent)


def sealed_control(event: ControlEvent | None = None, prev: int = 4, signer: Signer = CONTROL) -> ControlEvent:
    return decode_control(seal_control(event or suspension(), prev, signer))


SUBJECT = NAMES.decision_subject("demo", "deploy-bot", "deny")
CONTROL_SUBJECT = NAMES.control_subject("demo", "agent", "deploy-bot")


def test_a_sealed_decision_opens_and_names_its_key() -> None:
    """The gate's MAC verifies with its key, on the subject the content names."""
    event = sealed_decision()
    open_decision(event, SUBJECT, 10, RING, NAMES)
    assert check_decision(event, RING) == "gate-a"
    assert event.auth is not None and event.auth.alg == "hmac-sha256"


@given(field=st.sampled_from(["outcome", "reason", "agent_id", "org", "action", "target", "anchor", "policy", "gate",
                              "control_seq", "context", "decided_at"]))
def test_changing_any_field_of_a_decision_breaks_its_mac(field: str) -> None:
    """Whatever field an attacker changes, the MAC no longer verifies."""
    event = sealed_decision()
    value = {"outcome": "ALLOW", "control_seq": 10, "context": {}}.get(field, "forged")
    with pytest.raises(AuthError, match="does not verify"):
        check_decision(replace(event, **{field: value}), RING)


def test_a_decision_without_a_mac_by_another_key_or_with_a_bad_signature_is_refused() -> None:
    with pytest.raises(AuthError, match="carries no gate MAC"):
        check_decision(decision(), RING)
    with pytest.raises(AuthError, match="unknown gate key 'gate-b'"):
        check_decision(sealed_decision(key=GateKey("gate-b", bytes(32))), RING)
    with pytest.raises(AuthError, match="does not verify"):
        check_decision(sealed_decision(key=GateKey("gate-a", bytes(32))), RING)
    event = sealed_decision()
    assert event.auth is not None
    with pytest.raises(AuthError, match="not base64"):
        check_decision(replace(event, auth=replace(event.auth, sig="!!")), RING)
    with pytest.raises(AuthError, match="must carry hmac-sha256"):
        check_decision(replace(event, auth=replace(event.auth, alg="ed25519")), RING)


def test_a_genuine_decision_on_another_subject_is_a_replay() -> None:
    event = sealed_decision()
    for subject in (NAMES.decision_subject("acme", "deploy-bot", "deny"), NAMES.decision_subject("demo", "x", "deny"),
                    NAMES.decision_subject("demo", "deploy-bot", "allow")):
        with pytest.raises(AuthError, match="replayed on"):
            open_decision(event, subject, 1, RING, NAMES)


def test_a_revoked_gate_key_verifies_only_what_came_before_its_revocation() -> None:
    ring = GateKeyring.parse(f"{KEY} revoked-after 100")
    event = sealed_decision()
    open_decision(event, SUBJECT, 100, ring, NAMES)
    with pytest.raises(AuthError, match="revoked after stream sequence 100 \\(this event is at 101\\)"):
        open_decision(event, SUBJECT, 101, ring, NAMES)
    assert check_decision(event, ring) == "gate-a", "without a position (a proof bundle), the MAC still verifies"


def test_a_sealed_control_event_opens_in_its_place_only() -> None:
    event = sealed_control(prev=4)
    open_control(event, CONTROL_SUBJECT, 7, 4, CONTROLS, NAMES)
    assert check_control(event, CONTROLS) == CONTROL.verifier.label
    with pytest.raises(AuthError, match="signed to follow stream sequence 4 on its subject, found after 6"):
        open_control(event, CONTROL_SUBJECT, 9, 6, CONTROLS, NAMES)
    with pytest.raises(AuthError, match="replayed on"):
        open_control(event, NAMES.control_subject("acme", "agent", "deploy-bot"), 7, 4, CONTROLS, NAMES)


def test_a_control_signature_covers_the_event_and_its_place() -> None:
    event = sealed_control(prev=4)
    assert event.auth is not None
    for forged in (replace(event, reason="other"), replace(event, actor="bob"), replace(event, org="acme"),
                   replace(event, auth=replace(event.auth, prev=5))):
        with pytest.raises(AuthError):
            check_control(forged, CONTROLS)
    with pytest.raises(AuthError, match="carries no signature"):
        check_control(suspension(), CONTROLS)
    other = Signer.from_seed("claiim-control", bytes([1]) * 32)  # same name, another key: another label
    with pytest.raises(AuthError, match="unknown control key"):
        check_control(sealed_control(signer=other), CONTROLS)


def test_a_revoked_control_key_keeps_the_registry_it_built() -> None:
    """Events before the revocation still apply on a rebuild; none after it does."""
    ring = ControlKeyring.parse(f"{CONTROL.verifier} revoked-after 50")
    event = sealed_control(prev=0)
    open_control(event, CONTROL_SUBJECT, 50, 0, ring, NAMES)
    with pytest.raises(AuthError, match="revoked after stream sequence 50"):
        open_control(event, CONTROL_SUBJECT, 51, 0, ring, NAMES)


def test_an_event_inside_a_proposal_is_not_signed_until_it_is_appended() -> None:
    """What control stores in a proposal carries no signature: lifting it out and publishing it fails."""
    assert suspension().auth is None
    data = canonical_bytes(suspension())
    with pytest.raises(AuthError, match="carries no signature"):
        open_control(decode_control(data), CONTROL_SUBJECT, 1, 0, CONTROLS, NAMES)


def test_keyrings_parse_lines_commas_comments_and_refuse_nonsense() -> None:
    other = GateKey("gate-b", bytes(32))
    ring = GateKeyring.parse(f"# gates\n{KEY}\n\n{other} revoked-after 7  # retired, {GateKey('gate-c', bytes(32))}")
    assert len(ring) == 3 and ring.secret("gate-a", 10**9) == KEY.secret
    with pytest.raises(AuthError, match="revoked"):
        ring.secret("gate-b", 8)
    for bad, why in [(f"{KEY}\n{KEY}", "listed twice"), ("GATEKEY+x", "GATEKEY"), ("nonsense", "starts with"),
                     (f"{KEY} revoked-after", "KEY or KEY revoked-after N"), ("GATEKEY+a!b+AAAA", "must match"),
                     ("GATEKEY+a+" + base64.b64encode(bytes(5)).decode(), "32 secret bytes")]:
        with pytest.raises(KeyFormatError, match=why):
            GateKeyring.parse(bad)
    with pytest.raises(KeyFormatError, match="control verifier key"):
        ControlKeyring.parse("not-a-key")
    assert GateKey.parse(str(KEY)) == KEY and "secret" in repr(KEY) and KEY.secret.hex() not in repr(KEY)


@given(st.binary(min_size=32, max_size=32), st.text(alphabet="abcdefgh-_.0123", min_size=1, max_size=20))
def test_gate_keys_round_trip(secret: bytes, key_id: str) -> None:
    key = GateKey(key_id, secret)
    assert GateKey.parse(str(key)) == key


def test_the_mac_is_over_the_domain_and_canonical_bytes_with_auth_null() -> None:
    """What another implementation must compute: HMAC-SHA256(key, "claiim.decision-auth/1\\n" || canonical bytes
    of the event with auth null)."""
    import hashlib
    import hmac

    event = sealed_decision()
    assert event.auth is not None
    unsigned = canonical_bytes(replace(event, auth=None))
    assert b'"auth":null' in unsigned
    expected = hmac.digest(KEY.secret, b"claiim.decision-auth/1\n" + unsigned, hashlib.sha256)
    assert base64.b64decode(event.auth.sig) == expected
    assert EventAuth(alg="hmac-sha256", key="k", sig="s") == msgspec.json.decode(
        msgspec.json.encode(EventAuth(alg="hmac-sha256", key="k", sig="s")), type=EventAuth)
    assert secrets.compare_digest(canonical_bytes(event), seal_decision(decision(), KEY))


NASTY = st.text(alphabet=st.sampled_from(['"', "\\", ":", "a", "u", "t", "h", "n", "l", "{", "}", ",", "é", "\x00"]),
                max_size=24) | st.just('"auth":null') | st.just('\\"auth\\":null')


@given(action=NASTY, anchor=NASTY, agent=NASTY, context=st.dictionaries(NASTY, NASTY, max_size=3),
       request_id=st.none() | NASTY)
def test_sealed_bytes_are_the_event_with_its_mac_whatever_its_strings_hold(
        action: str, anchor: str, agent: str, context: dict[str, str], request_id: str | None) -> None:
    """Sealing fills in the event's own ``auth`` member: the result is the canonical encoding of the event with
    the MAC of its unsigned canonical bytes, even when its strings spell ``"auth":null``."""
    event = decision(action=action, anchor=anchor, agent_id=agent, context=context, request_id=request_id)
    mac = hmac.digest(KEY.secret, DECISION_DOMAIN + canonical_bytes(event), "sha256")
    want = canonical_bytes(replace(event, auth=EventAuth(alg="hmac-sha256", key=KEY.id,
                                                         sig=base64.b64encode(mac).decode())))
    assert seal_decision(event, KEY) == want
    check_decision(msgspec.json.decode(want, type=DecisionEvent), RING)
