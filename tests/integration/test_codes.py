"""Every refusal of the admin and Chron APIs carries a stable code, and the SDK raises its class: clients decide on
the code, never on the English text."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from claiim import (
    AdminError,
    AsyncAdmin,
    AsyncGate,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotCheckpointedError,
    NotFoundError,
    UnauthenticatedError,
)
from claiim.transport import NatsTransport
from claiim_core.schemas import AgentCommandReply, ApplyReply, ChronResult, RegistryQueryReply

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def admin(stack: Stack, token: str) -> AsyncAdmin:
    return AsyncAdmin(stack.settings.url, token, org="demo", namespace=stack.settings.namespace)


async def test_each_refusal_raises_the_class_of_its_code(stack: Stack) -> None:
    operator = stack.admin
    auditor = admin(stack, await operator.enrol_admin("audrey", "auditor"))
    stranger = admin(stack, "adm_demo.not-a-token")
    await operator.suspend("review-bot")
    cases: list[tuple[str, Callable[[], Awaitable[Any]], type[AdminError], str]] = [
        ("an unknown agent", lambda: operator.agent("nobody"), NotFoundError, "not-found"),
        ("an unknown record", lambda: operator.chron_prove("chr_01JZZZZZZZZZZZZZZZZZZZZZZZ"), NotFoundError,
         "not-found"),
        ("an auditor changing something", lambda: auditor.suspend("deploy-bot"), ForbiddenError, "forbidden"),
        ("an admin token that is not one", stranger.agents, UnauthenticatedError, "unauthenticated"),
        ("suspending a suspended agent", lambda: operator.suspend("review-bot"), ConflictError, "conflict"),
        ("a bundle with a bad pattern", lambda: operator.apply({"org": "demo", "skills": [
            {"name": "bad", "actions": ["no spaces allowed"]}]}), InvalidRequestError, "invalid"),
    ]
    try:
        for what, call, kind, code in cases:
            with pytest.raises(kind) as info:
                await call()
            assert info.value.code == code, what
    finally:
        await auditor.close()
        await stranger.close()
    assert info.value.problems and info.value.problems[0].startswith("skills[0] (bad).actions[0]")


async def test_a_record_newer_than_the_last_checkpoint_is_not_checkpointed_yet(stack: Stack) -> None:
    """Asked for a proof as soon as it is stored, a record is not yet in a checkpoint (one comes every 5 s): unless
    a checkpoint happened to land in between, which a second try rules out."""
    refusals = []
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        for _ in range(3):
            decision = await gate.check("deploy:staging", "api-v2")
            for _ in range(500):
                if await stack.admin.chron_show(decision.chron_id) is not None:
                    break
                await asyncio.sleep(0.01)
            try:
                await stack.admin.chron_prove(decision.chron_id)
            except NotCheckpointedError as e:
                refusals.append(e)
                break
    assert refusals and refusals[0].code == "not-checkpointed" and "not yet in a signed checkpoint" in str(
        refusals[0])


@pytest.mark.parametrize(("subject", "kind"), [
    ("admin_apply", ApplyReply), ("admin_agent", AgentCommandReply), ("admin_query", RegistryQueryReply),
    ("chron_query", ChronResult)])
async def test_a_malformed_request_is_answered_invalid_in_one_envelope(stack: Stack, subject: str, kind: type) -> None:
    """Whatever the API, a refusal has the same three members: ok false, a code, and the text."""
    transport = NatsTransport(stack.settings.url, name="codes-test", user="admin",
                              token=stack.settings.require_admin_token())
    try:
        data = await transport.request(getattr(stack.names, subject), b"{}", 10)
    finally:
        await transport.close()
    reply = msgspec.json.decode(data, type=kind)
    assert (reply.ok, reply.code) == (False, "invalid") and reply.error
