"""Versions are locked at evaluation: publishing v2 while decisions run, each decision records the
version it was actually evaluated against, and its outcome is that version's outcome."""

from __future__ import annotations

import asyncio
import time

import pytest
from claiim import AsyncGate, CheckResult

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def bundle(allow: list[str]) -> dict[str, object]:
    return {
        "org": "demo",
        "skills": [{"name": "ship", "actions": ["ship:build", "ship:release"]}],
        "policies": [{"name": "release", "skill": "ship", "allow": allow}],
        "agents": [{"id": "ship-bot", "anchor": "r.manager", "skills": ["ship"], "policy": "release"}],
    }


async def test_publishing_v2_under_load_locks_each_decision_to_one_version(stack: Stack) -> None:
    """ship:release is denied by release-v1 and allowed by release-v2, published while 8 callers decide."""
    token = (await stack.admin.apply(bundle(["ship:build"]))).tokens["ship-bot"]
    s = stack.settings
    results: list[CheckResult] = []
    published = asyncio.Event()
    warmed_up = asyncio.Event()
    after_publish = 0

    async def caller() -> None:
        nonlocal after_publish
        async with AsyncGate("ship-bot", token, s.url, namespace=s.namespace) as gate:
            while after_publish < 200:
                results.append(await gate.check(action="ship:release", target="prod"))
                if len(results) >= 200:
                    warmed_up.set()
                if published.is_set():
                    after_publish += 1

    callers = [asyncio.create_task(caller()) for _ in range(8)]
    await asyncio.wait_for(warmed_up.wait(), timeout=60)
    started = time.monotonic()
    v2 = await stack.admin.apply(bundle(["ship:build", "ship:release"]))
    published.set()
    assert v2.changes == ["unchanged skill ship-v1", "published policy release-v2", "unchanged agent ship-bot"]
    await asyncio.wait_for(asyncio.gather(*callers), timeout=60)
    print(f"{len(results)} decisions; v2 published in {(time.monotonic() - started) * 1000:.1f} ms")

    by_version = {label: [r for r in results if r.policy == label] for label in ("release-v1", "release-v2")}
    assert len(by_version["release-v1"]) + len(by_version["release-v2"]) == len(results)
    assert by_version["release-v1"] and by_version["release-v2"], "the load did not straddle the publication"
    assert all(r.outcome == "DENY" and r.rule == "default-deny" for r in by_version["release-v1"])
    assert all(r.outcome == "ALLOW" and r.rule == "allow[1]: ship:release" for r in by_version["release-v2"])

    # Chron holds each decision with the version and the control-stream position it was evaluated at.
    assert stack.running.chron is not None
    wanted = {r.chron_id: r for r in results}
    for _ in range(200):
        rows = await stack.running.chron.store.query(agent_id="ship-bot", kind="decision", limit=10_000)
        if len(rows) >= len(wanted):
            break
        await asyncio.sleep(0.05)
    stored = {row["chron_id"]: row for row in rows}
    assert set(wanted) <= set(stored)
    for chron_id, reply in wanted.items():
        row = stored[chron_id]
        assert (row["outcome"], row["policy"], row["skill"]) == (reply.outcome, reply.policy, "ship-v1")
        assert (row["control_seq"] >= v2.control_seq) == (reply.policy == "release-v2"), row
