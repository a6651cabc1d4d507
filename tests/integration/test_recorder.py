"""The gate's pipelined publisher against a real nats-server: every publish ends, stored or failed."""

from __future__ import annotations

import asyncio
import secrets

import nats
import pytest
from claiim_runtime.pubacks import NO_LEADER, AckPipeline, Stored

pytestmark = pytest.mark.integration


async def run(nats_url: str, subject: str, listen: bool, timeout: float = 0.3) -> list[str | None]:
    nc = await nats.connect(nats_url)
    results: list[str | None] = []

    async def done(stored: Stored) -> None:
        results.append(stored.problem)

    try:
        if listen:  # an ordinary subscriber takes the message and never acks, like a lost PubAck
            await nc.subscribe(subject)
        pipe = AckPipeline(nc, "NOSUCHSTREAM", timeout)
        await pipe.start()
        await pipe.publish(subject, b"{}", "msg-1", done)
        await asyncio.sleep(timeout * 4)
        assert pipe.in_flight == 0
        await pipe.stop()
    finally:
        await nc.close()
    return results


async def test_a_lost_puback_fails_after_the_timeout(nats_url: str) -> None:
    """A publish whose PubAck never comes is failed by the sweeper, exactly once."""
    assert await run(nats_url, f"sink.{secrets.token_hex(4)}", listen=True) == ["no PubAck in time"]


async def test_a_subject_no_stream_takes_fails_at_once(nats_url: str) -> None:
    """With nobody behind the subject, the server's 503 fails the publish."""
    assert await run(nats_url, f"void.{secrets.token_hex(4)}", listen=False) == [NO_LEADER]
