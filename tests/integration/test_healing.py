"""Services heal by themselves: Chron stores again after its PostgreSQL restarts or crashes, what a dead or
stopping Chron had fetched reaches the next one within seconds, and every stop is bounded while NATS or
PostgreSQL are gone."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from claiim import AsyncGate
from claiim_chron.service import ACK_WAIT_S
from claiim_chron.verify import evidence_from_stream
from claiim_core.names import Names
from claiim_runtime.natsconf import MAINTENANCE_USER
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import STOP_S, RunningServices, start_services
from claiim_server.servers import NatsCredentials, ensure_database, free_port, new_password, start_nats

from tests.conftest import Stack, backend, connect_as, load_demo, needs_nats_auth, new_settings
from tests.pgproc import OwnPostgres

pytestmark = [pytest.mark.integration, needs_nats_auth]
DEMO_EVENTS = 9
"""Control events of the demo bundle, each a leaf."""
HEAL_S = 5.0
"""The promise: Chron stores what waited within this long of PostgreSQL accepting connections again."""


@pytest.fixture
async def parts(tmp_path: Path, own_pg: OwnPostgres) -> AsyncIterator[tuple[Settings, object]]:
    """Settings for a stack on a nats-server and a PostgreSQL of this test's own (both may be stopped)."""
    namespace = f"h{secrets.token_hex(4)}"
    generated = NatsCredentials.generate()
    credentials = NatsCredentials({**generated.passwords, MAINTENANCE_USER: new_password()}, generated.issuer_seed)
    server = start_nats(free_port(), tmp_path / "nats", credentials=credentials, names=Names(namespace))
    db = await ensure_database(own_pg.url, "claiim")
    settings = new_settings(server.url, db, namespace, credentials)
    try:
        yield settings.model_copy(update={"ui_port": 0}), server
    finally:
        server.stop()


async def checks(settings: Settings, token: str, count: int) -> list[str]:
    """``count`` checks of deploy-bot; their chron ids (every one must be recorded)."""
    async with AsyncGate("deploy-bot", token, settings.url, namespace=settings.namespace) as gate:
        replies = [await gate.check(action="deploy:staging", target="api-v2") for _ in range(count)]
    assert all(r.outcome == "ALLOW" and r.chron_id for r in replies)
    return [r.chron_id for r in replies]


async def stored(db_url: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM chron_events WHERE chron_id = ANY($1)", ids))
    finally:
        await conn.close()


async def seconds_until_stored(db_url: str, ids: list[str], limit: float = 40.0) -> float:
    """How long until every one of ``ids`` is a row in Chron (fails after ``limit`` seconds)."""
    started = time.monotonic()
    while True:
        try:
            if await stored(db_url, ids) == len(ids):
                return time.monotonic() - started
        except Exception:  # PostgreSQL away, or going away under the query: ask again
            pass
        if time.monotonic() - started > limit:
            pytest.fail(f"Chron did not store {len(ids)} decisions within {limit:g} s")
        await asyncio.sleep(0.05)


async def dense(db_url: str) -> bool:
    conn = await asyncpg.connect(db_url)
    try:
        count, low, high = await conn.fetchrow("SELECT count(*), min(leaf_index), max(leaf_index) FROM chron_events")
    finally:
        await conn.close()
    return bool(low == 0 and high == count - 1)


@pytest.mark.parametrize("fault", ["restart after 5 s", "crash"])
async def test_chron_stores_again_after_postgresql_comes_back(parts: tuple[Settings, object], own_pg: OwnPostgres,
                                                              fault: str) -> None:
    """PostgreSQL stopped for 5 s (or killed and started again) while the gate goes on answering: once it accepts
    connections again, Chron stores every decision that waited within 5 s, without a restart, once each."""
    settings, _ = parts
    running = await start_services(settings, backend(settings), instance="heal")
    try:
        tokens = await load_demo(settings)
        token = tokens["deploy-bot"]
        before = await checks(settings, token, 10)
        await seconds_until_stored(settings.require_database_url(), before)
        if fault == "crash":
            own_pg.kill()
        else:
            own_pg.stop()
        during = await checks(settings, token, 30)
        if fault != "crash":
            await asyncio.sleep(5)
        own_pg.start()
        took = await seconds_until_stored(settings.require_database_url(), [*before, *during])
        assert took < HEAL_S, f"Chron needed {took:.2f} s after PostgreSQL came back"
        after = await checks(settings, token, 5)
        await seconds_until_stored(settings.require_database_url(), after, limit=HEAL_S)
        assert await dense(settings.require_database_url())
    finally:
        await running.stop()


async def test_what_a_dead_chron_fetched_reaches_the_next_within_seconds(parts: tuple[Settings, object]) -> None:
    """Decisions a Chron fetched and then died with (neither acked nor handed back) are redelivered after
    Chron's ack_wait of 5 s, not 30: a new Chron stores them within about that."""
    settings, _ = parts
    others = await start_services(settings, tuple(s for s in backend(settings) if s != "chron"), instance="rest")
    chron = await start_services(settings, ("chron",), instance="chron-1")
    try:
        token = (await load_demo(settings))["deploy-bot"]
        await chron.stop()
        ids = await checks(settings, token, 20)
        dead = await connect_as(settings)  # the dead Chron: fetches on Chron's consumer, never answers
        psub = await dead.jetstream().pull_subscribe_bind(durable=settings.names.chron_durable,
                                                          stream=settings.names.decisions_stream)
        fetched = await psub.fetch(100, timeout=5)
        assert len(fetched) >= 20
        await dead.close()
        chron = await start_services(settings, ("chron",), instance="chron-2")
        took = await seconds_until_stored(settings.require_database_url(), ids)
        assert took < ACK_WAIT_S + 2, f"redelivered after {took:.2f} s"
    finally:
        await chron.stop()
        await others.stop()


async def test_a_stopping_chron_hands_back_what_it_could_not_store(parts: tuple[Settings, object]) -> None:
    """A Chron stopped while PostgreSQL holds its batch up stops within its bound and hands the batch back (nak):
    the next Chron stores it at once, not after ack_wait."""
    settings, _ = parts
    db_url = settings.require_database_url()
    others = await start_services(settings, tuple(s for s in backend(settings) if s != "chron"), instance="rest")
    chron = await start_services(settings, ("chron",), instance="chron-1")
    blocker = await asyncpg.connect(db_url)
    try:
        token = (await load_demo(settings))["deploy-bot"]
        await seconds_until_stored(db_url, await checks(settings, token, 1))
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE chron_events IN ACCESS EXCLUSIVE MODE")  # Chron's insert waits
        ids = await checks(settings, token, 20)
        await asyncio.sleep(0.5)  # Chron has fetched them and waits on the lock
        started = time.monotonic()
        await chron.stop()
        stop_took = time.monotonic() - started
        await transaction.rollback()
        chron = await start_services(settings, ("chron",), instance="chron-2")
        took = await seconds_until_stored(db_url, ids)
        assert stop_took < STOP_S + 0.5, f"stopping took {stop_took:.2f} s"
        assert took < ACK_WAIT_S - 1, f"stored {took:.2f} s after the next Chron started: not handed back"
        assert await dense(db_url)
    finally:
        await blocker.close()
        await chron.stop()
        await others.stop()


@pytest.mark.parametrize("gone", ["NATS", "NATS and PostgreSQL"])
async def test_every_stop_is_bounded_when_its_servers_are_gone(parts: tuple[Settings, object], own_pg: OwnPostgres,
                                                               gone: str) -> None:
    """With its nats-server killed (and PostgreSQL too), stopping every service takes at most STOP_S (2 s)."""
    settings, server = parts
    verifier = str(settings.require_checkpoint_signer().verifier)
    running: RunningServices = await start_services(settings.model_copy(update={"checkpoint_verifier": verifier}),
                                                    (*backend(settings), "admin"), instance="bounded")
    await load_demo(settings)
    server.process.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
    if gone != "NATS":
        own_pg.kill()
    await asyncio.sleep(0.5)  # the services notice: reconnect loops, failing fetches
    started = time.monotonic()
    await running.stop()
    took = time.monotonic() - started
    assert took < STOP_S + 0.3, f"stopping took {took:.2f} s"


async def fed(stack: Stack) -> list[str]:
    """The chron ids the proofs feed names, in leaf order, as far as its batches are contiguous."""
    nc = await connect_as(stack.settings)
    try:
        evidence = await evidence_from_stream(nc.jetstream(), stack.settings.names)
    finally:
        await nc.close()
    ids: list[str] = []
    for first, leaves in sorted(evidence.batches, key=lambda b: b[0]):
        if first > len(ids):
            break
        ids.extend(chron_id for chron_id, _ in leaves[len(ids) - first:])
    return ids


async def feed_reaches(stack: Stack, size: int, within: float = 10.0) -> list[str]:
    deadline = time.monotonic() + within
    while len(ids := await fed(stack)) < size:
        assert time.monotonic() < deadline, f"the proofs feed names {len(ids)} of {size} leaves after {within} s"
        await asyncio.sleep(0.1)
    return ids


async def test_the_proofs_feed_heals_a_lost_tail(stack: Stack) -> None:
    """A feed message the stream no longer has (deleted here; a failover can lose what a leader acknowledged):
    Chron's next append expects it and is refused, Chron reads where the feed really is and publishes the lost
    leaves again, so the feed stays contiguous and names every leaf once."""
    chron = stack.running.chron
    assert chron is not None
    names = stack.settings.names
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        for i in range(5):
            await gate.check(action="deploy:staging", target=f"api-{i}")
        await feed_reaches(stack, DEMO_EVENTS + 5)
        nc = await connect_as(stack.settings)
        try:
            last = await nc.jetstream().get_last_msg(names.proofs_stream, names.chron_leaves)
            lost = len(json.loads(last.data or b"{}")["leaves"])
            await nc.jetstream().delete_msg(names.proofs_stream, last.seq or 0)
        finally:
            await nc.close()
        assert len(await fed(stack)) == chron.store.frontier.size - lost
        for i in range(5):
            await gate.check(action="deploy:staging", target=f"web-{i}")
        ids = await feed_reaches(stack, DEMO_EVENTS + 10)
    assert len(ids) == len(set(ids)) == chron.store.frontier.size == DEMO_EVENTS + 10
