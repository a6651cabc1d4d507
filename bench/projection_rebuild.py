"""How long a new gate replica takes to rebuild its registry from N control events.

Starts its own nats-server, publishes N events (an org, then skill versions and agent
suspensions/reactivations), then times a fresh RegistryFollower from start to caught up.

    .venv/bin/python bench/projection_rebuild.py [--events 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import nats
from claiim._servers import free_port, start_nats
from claiim_core.canonical import canonical_bytes
from claiim_core.events import (
    AgentReactivated,
    AgentRegistered,
    AgentSuspended,
    ControlEvent,
    OrgCreated,
    SkillPublished,
    aggregate,
)
from claiim_core.names import Names
from claiim_runtime.follower import RegistryFollower
from claiim_runtime.streams import ensure_streams


def events(n: int) -> list[ControlEvent]:
    base = {"at": "2026-11-25T00:00:00.000000Z", "actor": "bench", "org": "bench"}
    out: list[ControlEvent] = [OrgCreated(event_id="chr_org", **base)]
    for i in range(1, n // 2):
        out.append(SkillPublished(event_id=f"chr_s{i}", name="skill", version=i, description="",
                                  actions=(f"a:{i}", "b:*"), content_hash=f"h{i}", **base))
    out.append(AgentRegistered(event_id="chr_a", agent_id="bot", anchor="x", description="", skills=("skill",),
                               policy="p", token_hash="0" * 64, **base))
    while len(out) < n:
        cls = AgentSuspended if len(out) % 2 else AgentReactivated
        out.append(cls(event_id=f"chr_l{len(out)}", agent_id="bot", reason="", **base))
    return out


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        server = start_nats(free_port(), Path(d))
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            names = Names("bench")
            await ensure_streams(js, names)
            started = time.perf_counter()
            acks = []
            for event in events(n):
                kind, name = aggregate(event)
                acks.append(js.publish(names.control_subject(event.org, kind, name), canonical_bytes(event)))
                if len(acks) >= 500:
                    await asyncio.gather(*acks)
                    acks.clear()
            await asyncio.gather(*acks)
            print(f"published {n} control events in {time.perf_counter() - started:.2f}s")
            for attempt in range(3):
                follower = RegistryFollower(js, names)
                started = time.perf_counter()
                await follower.start()
                took = time.perf_counter() - started
                print(f"rebuild {attempt + 1}: {n} events in {took * 1000:.0f} ms "
                      f"({n / took:,.0f} events/s), last seq {follower.registry.last_seq}")
                await follower.stop()
            await nc.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().events))
