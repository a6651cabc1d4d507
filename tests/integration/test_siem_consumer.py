"""The SIEM consumer example against a real stack: filtered, resumable reads of the decisions stream."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from claiim import AsyncGate
from claiim_core.ids import rfc3339
from claiim_core.schemas import DecisionEvent
from claiim_server.cli import chron as chron_cli

from tests.conftest import Stack, connect_as

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import siem_consumer

pytestmark = pytest.mark.integration


async def last_seq(stack: Stack) -> int:
    """The stream sequence of the newest decision (0 when there is none)."""
    nc = await connect_as(stack.settings)
    try:
        info = await nc.jetstream().stream_info(stack.names.decisions_stream)
        return info.state.last_seq
    finally:
        await nc.close()


async def decide(stack: Stack, *actions: str) -> list[str]:
    """Ask the gate about each action as deploy-bot; return the chron ids (each is in the stream on return)."""
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        return [(await gate.check(action=action, target="api-v2")).chron_id for action in actions]


async def read(stack: Stack, subject: str | None = None, **start: Any) -> list[dict[str, Any]]:
    """Everything the consumer yields until the stream has been quiet for half a second."""
    lines = siem_consumer.consume(stack.settings.url, stack.settings.namespace, subject, idle=0.5,
                                  password=stack.settings.nats_password("siem"), **start)
    return [json.loads(line) async for line in lines]


async def test_denials_from_a_sequence_as_ocsf(stack: Stack) -> None:
    """From a sequence (or a time) with a denials filter, the consumer yields exactly the later DENYs, Blocked."""
    await decide(stack, "deploy:production")  # before the start: must not come
    start, since = await last_seq(stack) + 1, rfc3339(time.time_ns() // 1000)
    _, deny1, _, deny2 = await decide(stack, "deploy:staging", "deploy:production", "deploy:staging",
                                                "deploy:production")
    denials = f"{stack.settings.namespace}.decision.demo.*.deny"
    for found in (await read(stack, denials, from_seq=start, ocsf=True),
                  await read(stack, denials, since=since, ocsf=True)):
        assert [o["metadata"]["uid"] for o in found] == [deny1, deny2]
        for ocsf in found:
            assert (ocsf["class_uid"], ocsf["disposition_id"], ocsf["disposition"]) == (6003, 2, "Blocked")
            assert (ocsf["policy"]["name"], ocsf["api"]["operation"]) == ("no-prod-v1", "deploy:production")
            assert ocsf["actor"]["user"]["name"] == "deploy-bot"


async def test_a_later_start_skips_earlier_decisions(stack: Stack) -> None:
    """Starting one sequence after a decision skips it; unfiltered, each later decision comes as decision JSON."""
    _, second, third = await decide(stack, "deploy:production", "deploy:staging", "deploy:production")
    start = await last_seq(stack) - 1  # the stream sequence of ``second``
    found = await read(stack, from_seq=start)
    assert [o["chron_id"] for o in found] == [second, third]
    assert [msgspec.convert(o, DecisionEvent).outcome for o in found] == ["ALLOW", "DENY"]


async def test_limit_stops_the_command_line(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """main() with --limit prints that many JSON lines, from the given sequence, and exits 0."""
    await decide(stack, "deploy:staging", "deploy:production", "deploy:staging")
    start = await last_seq(stack) - 2
    argv = ["--url", stack.settings.url, "--namespace", stack.settings.namespace, "--from-seq", str(start),
            "--limit", "2", "--ocsf", "--password", stack.settings.nats_password("siem") or ""]
    assert await asyncio.to_thread(siem_consumer.main, argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["disposition"] for line in lines] == ["Allowed", "Blocked"]


async def test_chron_publishes_each_decision_as_ocsf_on_its_own_subject(stack: Stack) -> None:
    """The OCSF feed: one OCSF event per decision, on <ns>.ocsf.<org>.<agent>.<outcome>, deduplicated by chron id."""
    allow, deny = await decide(stack, "deploy:staging", "deploy:production")
    names = stack.names
    nc = await connect_as(stack.settings, "siem")
    try:
        js = nc.jetstream()
        sub = await js.subscribe(f"{names.namespace}.ocsf.demo.deploy-bot.deny", stream=names.ocsf_stream,
                                 ordered_consumer=True)
        event = json.loads((await sub.next_msg(timeout=10)).data)
        assert (event["metadata"]["uid"], event["class_uid"], event["disposition"]) == (deny, 6003, "Blocked")
        assert event["policy"]["name"] == "no-prod-v1"
        for _ in range(100):
            info = await js.stream_info(names.ocsf_stream)
            if info.state.messages >= 2:
                break
            await asyncio.sleep(0.05)
        assert info.state.messages == 2, "one OCSF event per decision"
        allowed = await js.get_last_msg(names.ocsf_stream, f"{names.namespace}.ocsf.demo.deploy-bot.allow")
        assert json.loads(allowed.data)["metadata"]["uid"] == allow
    finally:
        await nc.close()


async def test_replay_republishes_from_a_sequence(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """`claiim chron replay --from-seq N --republish PREFIX` sends each later decision to PREFIX.<its subject>."""
    first, second = await decide(stack, "deploy:staging", "deploy:production")
    monkeypatch.setenv("CLAIIM_URL", stack.settings.url)
    monkeypatch.setenv("CLAIIM_NAMESPACE", stack.settings.namespace)
    monkeypatch.setenv("CLAIIM_ADMIN_TOKEN", stack.settings.require_admin_token())  # replay runs as the operator
    nc = await connect_as(stack.settings)
    try:
        sub = await nc.subscribe("replayed.>")
        args = argparse.Namespace(stream="decisions", from_seq=await last_seq(stack), since=None, limit=0,
                                  republish="replayed")
        assert await chron_cli.replay(args) == 0
        msg = await sub.next_msg(timeout=5)
        assert msg.subject == f"replayed.{stack.names.namespace}.decision.demo.deploy-bot.deny"
        assert json.loads(msg.data)["chron_id"] == second
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.3)  # only decisions from that sequence on
    finally:
        await nc.close()
    assert first != second
