"""No plaintext token anywhere: not in any stream, not in Chron, not in the logs."""

from __future__ import annotations

import asyncio
import logging

import pytest
from claiim import AsyncGate, UnauthorizedError
from claiim_runtime.logs import JsonFormatter

from tests.conftest import AUTH_ON, Stack, connect_as, gate_via

pytestmark = pytest.mark.integration


async def all_stream_bytes(stack: Stack) -> bytes:
    """Every message of every claiim stream, headers included."""
    names = stack.names
    nc = await connect_as(stack.settings)
    out = bytearray()
    try:
        js = nc.jetstream()
        for stream in (names.decisions_stream, names.control_stream, names.proofs_stream, names.ocsf_stream):
            info = await js.stream_info(stream)
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out += msg.data or b""
                out += repr(msg.headers).encode()
    finally:
        await nc.close()
    return bytes(out)


async def test_no_plaintext_token_in_streams_chron_or_logs(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admin = stack.admin
    agent_tokens = dict(stack.tokens)
    agent_tokens["deploy-bot-2"] = await admin.rotate_token("deploy-bot")
    admin_token = await admin.enrol_admin("alice")
    wrong = "clm_demo.this-is-a-wrong-token-presented-by-someone"
    async with AsyncGate("deploy-bot", agent_tokens["deploy-bot-2"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        await gate.check(action="deploy:staging", target="api-v2")
    for token in (agent_tokens["deploy-bot"], wrong):  # a rotated-out and a wrong token, both recorded as DENY
        async with gate_via(stack, "deploy-bot", token) as gate:
            assert (await gate.check(action="deploy:staging", target="api-v2")).outcome == "DENY"
        if AUTH_ON:  # and refused by NATS, whose auth service must not log them either
            with pytest.raises(UnauthorizedError):
                async with AsyncGate("deploy-bot", token, stack.settings.url, namespace=stack.settings.namespace) as g:
                    await g.check(action="deploy:staging")
    assert stack.running.chron is not None
    for _ in range(100):
        if stack.running.chron.stored >= 14:  # 9 demo events, rotation, enrolment, 3 decisions
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    rows = await stack.running.chron.store.query(limit=10_000)
    chron = b"".join(repr(sorted(r.items())).encode() for r in rows)
    streams = await all_stream_bytes(stack)
    as_json = JsonFormatter("test")
    logs = "\n".join([*(r.getMessage() for r in caplog.records), *(as_json.format(r) for r in caplog.records)]).encode()
    secrets = [*agent_tokens.values(), admin_token, wrong, stack.settings.require_admin_token(),
               stack.settings.require_token_secret().decode()]
    assert len(rows) >= 14 and len(streams) > 1000, "nothing to search"
    for secret in secrets:
        body = secret.split(".", 1)[-1].encode()  # the secret part (the org prefix is public)
        assert body not in streams, f"a token is in a stream: {secret[:12]}..."
        assert body not in chron, f"a token is in Chron: {secret[:12]}..."
        assert body not in logs, f"a token is in the logs: {secret[:12]}..."
