"""How long a new gate replica takes to rebuild its registry from N control events.

Starts its own nats-server, publishes N events (an org, then skill versions and agent
suspensions/reactivations), each signed by a control key as the control service signs them, then
times a fresh RegistryFollower (which verifies every signature) from start to caught up.

    .venv/bin/python bench/projection_rebuild.py [--events 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import nats
from claiim_core.checkpoint import Signer
from claiim_core.eventauth import ControlKeyring, Trusted, seal_control
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
from claiim_server.servers import free_port, start_nats


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
            signer = Signer.from_seed("bench-control", secrets.token_bytes(32))
            started = time.perf_counter()
            last: dict[str, int] = {}
            for seq, event in enumerate(events(n), start=1):  # one publisher: the stream sequence is known
                subject = names.control_subject(event.org, *aggregate(event))
                await js.publish(subject, seal_control(event, last.get(subject, 0), signer))
                last[subject] = seq
            print(f"published {n} signed control events in {time.perf_counter() - started:.2f}s")
            for attempt in range(3):
                follower = RegistryFollower(js, names, ControlKeyring([Trusted(signer.verifier)]))
                started = time.perf_counter()
                await follower.start()
                took = time.perf_counter() - started
                print(f"rebuild {attempt + 1}: {n} events in {took * 1000:.0f} ms "
                      f"({n / took:,.0f} events/s), last seq {follower.registry.last_seq}, "
                      f"refused {follower.rejected}")
                await follower.stop()
            await nc.close()
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().events))
