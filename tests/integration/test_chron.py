"""Chron against real PostgreSQL and JetStream: no loss, no duplicates, append-only, parking."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import msgspec
import pytest
from claiim_chron.eventcodec import unpack
from claiim_chron.rows import Row, to_row
from claiim_chron.store import ChronStore
from claiim_core.merkle import leaf_hash
from claiim_core.schemas import DecisionEvent
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.servers import ensure_database

from tests.conftest import Stack, connect_as, sealed

pytestmark = pytest.mark.integration


def event(i: int) -> DecisionEvent:
    return DecisionEvent(
        chron_id=f"chr_01test{i:020d}", decided_at="2026-11-25T10:00:00.000000Z", outcome="ALLOW",
        reason="policy:p-v1 -- action allowed", rule="allow[0]: a:b", org="demo", agent_id="bot",
        anchor="someone", action="a:b", target="t", context={}, request_id=None, policy="p-v1",
        skill="s-v1", gate="test", control_seq=1,
    )


async def count(db_url: str, sql: str = "SELECT count(*) FROM chron_events WHERE kind = 'decision'") -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def wait_count(db_url: str, expected: int, sql: str | None = None) -> None:
    for _ in range(200):
        n = await count(db_url, sql) if sql else await count(db_url)
        if n >= expected:
            assert n == expected
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {expected} rows, have {n}")


async def test_redelivery_and_republish_do_not_duplicate_rows(stack_settings: Settings) -> None:
    """The same event published again under another msg id is stored once; the copies are parked as replays."""
    running = await start_services(stack_settings, which=("chron",))
    nc = await connect_as(stack_settings, "gate")
    js = nc.jetstream()
    names = stack_settings.names
    db = stack_settings.require_database_url()
    try:
        for i in range(10):
            await js.publish(names.decision_subject("demo", "bot", "allow"), sealed(stack_settings, event(i)))
        for i in range(5):  # a publisher retrying after a lost PubAck, past the dedup window
            await js.publish(names.decision_subject("demo", "bot", "allow"), sealed(stack_settings, event(i)),
                             headers={"Nats-Msg-Id": f"retry-{i}"})
        await wait_count(db, 10)
        await wait_count(db, 5, "SELECT count(*) FROM chron_parked")
        await asyncio.sleep(0.5)
        assert await count(db) == 10
        conn = await asyncpg.connect(db)
        errors = [r["error"] for r in await conn.fetch("SELECT error FROM chron_parked ORDER BY stream_seq")]
        await conn.close()
        assert all(e.startswith("replayed: chron id chr_01test") for e in errors), errors
    finally:
        await running.stop()
        await nc.close()


async def test_chron_resumes_where_it_stopped(stack_settings: Settings) -> None:
    """Events published while Chron is down are stored when it comes back, each exactly once."""
    names = stack_settings.names
    db = stack_settings.require_database_url()
    nc = await connect_as(stack_settings, "gate")
    js = nc.jetstream()
    try:
        running = await start_services(stack_settings, which=("chron",))
        for i in range(20):
            await js.publish(names.decision_subject("demo", "bot", "allow"), sealed(stack_settings, event(i)))
        await wait_count(db, 20)
        await running.stop()
        for i in range(20, 50):
            await js.publish(names.decision_subject("demo", "bot", "allow"), sealed(stack_settings, event(i)))
        assert await count(db) == 20
        running = await start_services(stack_settings, which=("chron",))
        await wait_count(db, 50)
        conn = await asyncpg.connect(db)
        seqs = [r["stream_seq"] for r in await conn.fetch(
            "SELECT stream_seq FROM chron_events WHERE kind = 'decision' ORDER BY id")]
        await conn.close()
        assert seqs == list(range(1, 51))
        await running.stop()
    finally:
        await nc.close()


async def test_a_failed_transaction_is_retried_not_lost(stack_settings: Settings) -> None:
    """While the table refuses inserts, Chron acks nothing; once it accepts, every event is stored."""
    names = stack_settings.names
    db = stack_settings.require_database_url()
    running = await start_services(stack_settings, which=("chron",))
    nc = await connect_as(stack_settings, "gate")
    js = nc.jetstream()
    conn = await asyncpg.connect(db)
    try:
        await conn.execute("ALTER TABLE chron_events ADD CONSTRAINT no_writes CHECK (false) NOT VALID")
        for i in range(5):
            await js.publish(names.decision_subject("demo", "bot", "allow"), sealed(stack_settings, event(i)))
        await asyncio.sleep(1.5)
        assert await count(db) == 0
        await conn.execute("ALTER TABLE chron_events DROP CONSTRAINT no_writes")
        await wait_count(db, 5)
    finally:
        await conn.close()
        await running.stop()
        await nc.close()


@pytest.mark.parametrize("statement", [
    "UPDATE chron_events SET outcome = 'ALLOW'",
    "DELETE FROM chron_events",
    "TRUNCATE chron_events",
    "UPDATE chron_parked SET error = 'x'",
    "DELETE FROM chron_parked",
    "TRUNCATE chron_parked",
    "DELETE FROM chron_parked_acks",
    "TRUNCATE chron_parked_acks",
])
async def test_chron_tables_are_append_only(stack: Stack, statement: str) -> None:
    """UPDATE, DELETE and TRUNCATE on Chron's tables fail, and the rows stay as they were."""
    from claiim import AsyncGate

    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], stack.settings.url,
                         namespace=stack.settings.namespace) as gate:
        await gate.check(action="deploy:production")
    db = stack.settings.require_database_url()
    await wait_count(db, 1)
    await wait_count(db, 10, "SELECT count(*) FROM chron_events")  # and the demo bundle's 9 control events
    conn = await asyncpg.connect(db)
    try:
        before = await conn.fetch("SELECT * FROM chron_events ORDER BY id")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetch("SELECT * FROM chron_events ORDER BY id") == before
    finally:
        await conn.close()


async def test_undecodable_message_is_parked_not_lost(stack_settings: Settings) -> None:
    """A message that is not a decision is kept in chron_parked; the messages around it are stored."""
    names = stack_settings.names
    db = stack_settings.require_database_url()
    running = await start_services(stack_settings, which=("chron",))
    nc = await connect_as(stack_settings, "gate")
    js = nc.jetstream()
    try:
        subject = names.decision_subject("demo", "bot", "allow")
        await js.publish(subject, sealed(stack_settings, event(1)))
        await js.publish(subject, b"\x00 not a decision")
        await js.publish(subject, msgspec.json.encode({"schema": "claiim.decision/1", "outcome": "ALLOW"}))
        await js.publish(subject, sealed(stack_settings, event(2)))
        await wait_count(db, 2)
        await wait_count(db, 2, "SELECT count(*) FROM chron_parked")
        conn = await asyncpg.connect(db)
        parked = await conn.fetch("SELECT stream_seq, data, error FROM chron_parked ORDER BY stream_seq")
        await conn.close()
        assert [p["stream_seq"] for p in parked] == [2, 3]
        assert parked[0]["data"] == b"\x00 not a decision" and parked[0]["error"]
        assert running.chron is not None and running.chron.parked == 2
    finally:
        await running.stop()
        await nc.close()


async def test_rows_are_stored_as_they_are_unless_packing_is_on_and_both_read_alike(pg_url: str) -> None:
    """CLAIIM_CHRON_PACKING's two forms in one table: rows stored as they are (the default), then packed (zstd);
    every row reads back as the event's own bytes, its leaf hash over them."""
    db_url = await ensure_database(pg_url, f"t_{secrets.token_hex(6)}")
    events = [msgspec.json.encode(event(i)) for i in range(6)]
    rows = [to_row("decision", "DECISIONS", i + 1, "x.decision.demo.bot.a", data) for i, data in enumerate(events)]
    assert all(isinstance(r, Row) for r in rows)
    for packing, batch in ((False, rows[:3]), (True, rows[3:])):
        store = await ChronStore.open(db_url, packing=packing)
        try:
            await store.append(batch, [])  # type: ignore[arg-type]
        finally:
            await store.close()
    conn = await asyncpg.connect(db_url)
    try:
        stored = await conn.fetch("SELECT event, leaf_hash FROM chron_events ORDER BY leaf_index")
    finally:
        await conn.close()
    assert [bytes(r["event"]) for r in stored[:3]] == events[:3]
    assert all(bytes(r["event"])[:1] == b"\x01" and len(r["event"]) < len(e) for r, e in zip(stored[3:], events[3:],
                                                                                             strict=True))
    assert [unpack(bytes(r["event"])) for r in stored] == events
    assert [bytes(r["leaf_hash"]) for r in stored] == [leaf_hash(e) for e in events]
    store = await ChronStore.open(db_url)
    try:
        found = await store.query(org="demo", limit=10)
    finally:
        await store.close()
    assert sorted(bytes(r["event"]) for r in found) == sorted(events)
