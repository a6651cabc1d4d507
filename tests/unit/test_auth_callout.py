"""The auth callout's pure parts: nkeys as nats-server writes them, the JWTs it exchanges, who is granted
what, and the server configuration claiim generates."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from claiim_auth.grants import OPERATOR_NAME, Denied, grant, operator_denied
from claiim_auth.jwt import AuthRequest, JwtError, Permissions, decode_request, encode, response, user_jwt
from claiim_auth.nkeys import PREFIX_ACCOUNT, PREFIX_SERVER, PREFIX_USER, KeyPair, NkeyError, crc16, verify
from claiim_core.bundle import PlanContext, parse_bundle, plan_bundle
from claiim_core.commands import plan_admin_command, plan_agent_command
from claiim_core.names import Names, service_inbox
from claiim_core.registry import Registry
from claiim_core.schemas import AdminCommand, AgentCommand
from claiim_core.tokens import format_token, inbox_prefix
from claiim_runtime.natsconf import SERVICE_USERS, NatsConfig, render, rights
from claiim_server.servers import nats_server_binary, new_password
from claiim_server.stack import demo_bundle
from hypothesis import given
from hypothesis import strategies as st

# nats-server's own test vector (server/auth_callout_test.go): an account seed and its public key.
SEED = "SAANDLKMXL6CUS3CP52WIXBEDN6YJ545GDKC65U5JZPPV6WH6ESWUA6YAI"
PUBLIC = "ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA"
NAMES = Names("claiim")
SECRET = b"token-secret"
OPERATOR = "adm_operator-token"


def test_nkeys_match_nats_servers_test_vector() -> None:
    issuer = KeyPair.from_seed(SEED)
    assert (issuer.prefix, issuer.public_key, issuer.seed_text) == (PREFIX_ACCOUNT, PUBLIC, SEED)
    assert crc16(b"123456789") == 0x31C3  # CRC-16/XMODEM's check value
    assert verify(PUBLIC, PREFIX_ACCOUNT, b"data", issuer.sign(b"data"))
    assert not verify(PUBLIC, PREFIX_ACCOUNT, b"other", issuer.sign(b"data"))
    assert not verify(PUBLIC, PREFIX_USER, b"data", issuer.sign(b"data")), "the key's kind is checked"


@given(st.binary(min_size=32, max_size=32), st.sampled_from([PREFIX_ACCOUNT, PREFIX_USER, PREFIX_SERVER]))
def test_seeds_round_trip(seed: bytes, prefix: int) -> None:
    key = KeyPair(prefix, seed)
    again = KeyPair.from_seed(key.seed_text)
    assert (again.prefix, again.seed, again.public_key) == (prefix, seed, key.public_key)


def test_a_mistyped_seed_is_refused() -> None:
    for bad in (SEED[:-1] + ("A" if SEED[-1] != "A" else "B"), "SA", PUBLIC, "not base32!"):
        with pytest.raises(NkeyError):
            KeyPair.from_seed(bad)


def request_token(server: KeyPair, user_nkey: str, **opts: str) -> str:
    claims = {"aud": "nats-authorization-request", "sub": PUBLIC, "nats": {
        "server_id": {"name": "n1", "host": "127.0.0.1", "id": server.public_key}, "user_nkey": user_nkey,
        "client_info": {"host": "127.0.0.1", "id": 7}, "connect_opts": opts, "type": "authorization_request",
        "version": 2}}
    return encode(claims, server, 1_800_000_000)


def parts(token: str) -> tuple[dict[str, object], dict[str, object]]:
    header, body, _ = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(header + "==")), json.loads(base64.urlsafe_b64decode(body + "==")))


def test_a_request_decodes_and_the_answer_is_addressed_and_signed() -> None:
    server, user = KeyPair(PREFIX_SERVER, bytes(32)), KeyPair(PREFIX_USER, bytes([1]) * 32)
    request = decode_request(request_token(server, user.public_key, user="deploy-bot", **{"pass": "clm_demo.x"}))
    assert (request.user, request.password, request.client_id, request.server_id) == (
        "deploy-bot", "clm_demo.x", 7, server.public_key)
    issuer = KeyPair.from_seed(SEED)
    granted = user_jwt(request, "agent:demo/deploy-bot", "$G", Permissions(("claiim.gate.check",), ("_INBOX_c.x.>",)),
                       issuer, 1_800_000_000)
    header, body = parts(granted)
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert (body["iss"], body["sub"], body["aud"], body["name"]) == (PUBLIC, user.public_key, "$G",
                                                                     "agent:demo/deploy-bot")
    assert body["nats"] == {"pub": {"allow": ["claiim.gate.check"]}, "sub": {"allow": ["_INBOX_c.x.>"]}, "subs": -1,
                            "data": -1, "payload": -1, "type": "user", "version": 2}
    signed = granted.rsplit(".", 1)
    assert verify(PUBLIC, PREFIX_ACCOUNT, signed[0].encode(), base64.urlsafe_b64decode(signed[1] + "=="))
    _, answer = parts(response(request, issuer, 1_800_000_000, user=granted).decode())
    assert (answer["aud"], answer["sub"], answer["nats"]) == (server.public_key, user.public_key, {  # type: ignore[index]
        "jwt": granted, "type": "authorization_response", "version": 2})
    _, refusal = parts(response(request, issuer, 1_800_000_000, error="suspended").decode())
    assert refusal["nats"]["error"] == "suspended" and "jwt" not in refusal["nats"]  # type: ignore[index,operator]


def test_a_request_not_signed_by_the_server_it_names_is_ignored() -> None:
    server, impostor = KeyPair(PREFIX_SERVER, bytes(32)), KeyPair(PREFIX_SERVER, bytes([2]) * 32)
    user = KeyPair(PREFIX_USER, bytes([1]) * 32).public_key
    token = request_token(server, user)
    header, body, _ = token.split(".")
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(impostor.sign(f'{header}.{body}'.encode())).decode()}"
    with pytest.raises(JwtError, match="not signed by the server"):
        decode_request(forged)
    for bad in ("a.b", "x.y.z", encode({"aud": "something else"}, server, 0)):
        with pytest.raises(JwtError):
            decode_request(bad)


def registry() -> tuple[Registry, dict[str, str]]:
    """The seed bundle applied, plus an admin and an auditor; returns the registry and every token."""
    reg = Registry()
    counter = iter(range(1, 1000))
    ctx = PlanContext(actor="operator", now="2026-11-27T00:00:00Z", new_id=lambda: f"chr_{next(counter):026d}",
                      new_token=lambda kind, org: format_token(kind, org, bytes([next(counter)]) * 32),
                      token_secret=SECRET)
    plan = plan_bundle(reg, parse_bundle(demo_bundle()), ctx)
    seq = 0
    for e in plan.events:
        seq += 1
        reg.apply(seq, f"s{seq}", e)
    tokens = dict(plan.tokens)
    for name, role in (("alice", "admin"), ("audrey", "auditor")):
        event, token = plan_admin_command(reg, "demo", AdminCommand(admin_token="", op="enrol", name=name, role=role),
                                          ctx)
        seq += 1
        reg.apply(seq, f"s{seq}", event)
        assert token is not None
        tokens[name] = token
    return reg, tokens


def test_an_active_agent_gets_the_gate_and_its_own_inbox_only() -> None:
    """An agent may ask the gate (a check, what its skills cover, or an approval's outcome) and read its own
    inbox; nothing else."""
    reg, tokens = registry()
    token = tokens["deploy-bot"]
    granted = grant(reg, SECRET, OPERATOR, NAMES, "deploy-bot", token)
    assert granted.name == "agent:demo/deploy-bot"
    assert granted.permissions == Permissions(("claiim.gate.check", "claiim.gate.skills", "claiim.gate.wait"),
                                              (f"{inbox_prefix(token)}.>",))


def test_agents_that_may_not_act_get_no_connection() -> None:
    reg, tokens = registry()
    token = tokens["deploy-bot"]
    refusals = [("deploy-bot", "clm_demo.wrong", "bad token"), ("nobody", token, "no agent 'nobody'"),
                ("deploy-bot", tokens["review-bot"], "bad token"), ("deploy-bot", "", "no token given")]
    for user, password, why in refusals:
        with pytest.raises(Denied, match=why):
            grant(reg, SECRET, OPERATOR, NAMES, user, password)
    ctx = PlanContext(actor="alice", now="2026-11-27T00:00:00Z", new_id=lambda: "chr_x", token_secret=SECRET,
                      new_token=lambda kind, org: format_token(kind, org, bytes([9]) * 32))
    event, _ = plan_agent_command(reg, "demo", AgentCommand(admin_token="", op="suspend", agent_id="deploy-bot"), ctx)
    reg.apply(100, "s100", event)
    with pytest.raises(Denied, match="is suspended"):
        grant(reg, SECRET, OPERATOR, NAMES, "deploy-bot", token)
    event, _ = plan_agent_command(reg, "demo", AgentCommand(admin_token="", op="rotate-token", agent_id="review-bot"),
                                  ctx)
    reg.apply(101, "s101", event)
    with pytest.raises(Denied, match="rotated token"):
        grant(reg, SECRET, OPERATOR, NAMES, "review-bot", tokens["review-bot"])


def test_admins_and_auditors_get_the_apis_and_the_operator_never_the_events() -> None:
    reg, tokens = registry()
    for who in ("alice", "audrey"):
        granted = grant(reg, SECRET, OPERATOR, NAMES, "admin", tokens[who])
        assert granted.name == f"admin:demo/{who}"
        assert granted.permissions == Permissions(("claiim.admin.>", "claiim.chron.query"),
                                                  (f"{inbox_prefix(tokens[who])}.>",))
    operator = grant(reg, SECRET, OPERATOR, NAMES, "anything", OPERATOR)
    assert operator.name == OPERATOR_NAME and operator.permissions.publish == (">",)
    denied = set(operator.permissions.publish_deny)
    assert {"claiim.decision.>", "claiim.control.>", "claiim.gate.check", "_INBOX_c.>", "$JS.API.STREAM.DELETE.>",
            "$JS.API.STREAM.PURGE.>", "$JS.API.CONSUMER.DELETE.CLAIIM_DECISIONS.chron"} <= denied
    assert {f"{service_inbox(u)}.>" for u in SERVICE_USERS} <= denied
    assert denied == set(operator_denied(NAMES))
    with pytest.raises(Denied, match="not a valid admin token"):
        grant(reg, SECRET, OPERATOR, NAMES, "admin", "cla_demo.made-up")


def test_every_service_user_subscribes_to_its_own_inbox_only_and_nobody_to_everything() -> None:
    for user, r in rights(NAMES).items():
        inboxes = [s for s in r.subscribe if s.startswith("_INBOX")]
        assert inboxes == [f"{service_inbox(user)}.>"], user
        assert ">" not in r.subscribe and ">" not in r.publish and "$JS.API.>" not in r.publish, user
    assert "claiim.control.>" in rights(NAMES)["control"].publish
    assert not any(s.startswith("claiim.control") for u, r in rights(NAMES).items() if u != "control"
                   for s in r.publish)


def test_the_rendered_configuration_starts_a_real_nats_server(tmp_path: Path) -> None:
    """nats-server's configuration check accepts the file claiim up writes (literal passwords)."""
    passwords = {u: new_password() for u in SERVICE_USERS}
    text = render(NatsConfig(Names("t1"), issuer=PUBLIC, passwords=passwords, store_dir=str(tmp_path), port=4999))
    assert all(f'"{p}"' in text for p in passwords.values()) and "_NATS_PASSWORD" not in text
    (tmp_path / "nats.conf").write_text(text)
    out = subprocess.run([nats_server_binary(), "-c", str(tmp_path / "nats.conf"), "-t"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_the_jwt_time_is_the_callers() -> None:
    """The JWT helpers take the time as an argument (the service's clock), so that they stay pure."""
    req = AuthRequest("N", "n", KeyPair(PREFIX_USER, bytes(32)).public_key, 1, "h", "u", "p", "")
    assert parts(response(req, KeyPair.from_seed(SEED), 42).decode())[1]["iat"] == 42
