"""Chron with proofs: ingest rate against plain inserts, verify rate, proof time on a large log.

Run: ``.venv/bin/python bench/chron_proofs.py [--backlog 100000] [--proof-leaves 1000000]``

It starts its own nats-server and PostgreSQL (pgserver) in a temporary directory and measures, in
one run:

  (1) plain: the backlog's rows inserted with asyncpg into a table with the same columns and
      unique indexes as ``chron_events``, 1,000 rows per transaction, no NATS, no Merkle tree: the
      floor for storing these rows, three ways (``executemany`` of one INSERT, the baseline of the
      ratios; one INSERT of ``unnest`` arrays; a binary COPY);
  (2) chron: the real Chron (``ChronService``: JetStream pull consumer, batches of 1,000, each
      decision's gate MAC verified, leaf hashes, stored subtrees, proofs feed, checkpoints every 5 s)
      draining a backlog of the same decisions (authenticated by a gate key) published to the
      decision stream beforehand; also the intervals between the
      checkpoints it signed while draining; then the same again with the OCSF feed running in the
      same process (as in ``claiim up``), on a second namespace and database;
  (3) verify: ``verify_log`` over the whole database of (2), against the proofs stream, every
      decision's MAC checked with the gate keyring;
  (4) proofs: a log of ``--proof-leaves`` leaves written with ``ChronStore.append`` (10,000 per
      transaction), verified whole as ``claiim chron verify`` does (against a signed checkpoint of
      it and its proofs feed; no keyring), then inclusion proofs of 1,000 random leaves and 100 consistency proofs,
      each read from PostgreSQL and verified: time per proof.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import nats
from claiim_chron.ocsf_feed import OcsfFeed
from claiim_chron.rows import ROW_COLUMNS, Row, StreamAuthenticator, decision_row
from claiim_chron.service import ChronService
from claiim_chron.store import ChronStore
from claiim_chron.verify import Evidence, evidence_from_stream, verify_log
from claiim_core.canonical import canonical_bytes
from claiim_core.checkpoint import Checkpoint, Signer
from claiim_core.eventauth import ControlKeyring, GateKey, GateKeyring, Trusted, seal_decision
from claiim_core.ids import chron_id, rfc3339
from claiim_core.merkle import (
    consistency_ranges,
    inclusion_ranges,
    nodes_for,
    proof_from,
    verify_consistency,
    verify_inclusion,
)
from claiim_core.names import Names
from claiim_core.schemas import DecisionEvent
from claiim_runtime.follower import RegistryFollower
from claiim_runtime.streams import ensure_streams
from claiim_server.servers import ensure_database, free_port, start_nats, start_postgres

BATCH = 1000
PLAIN_TABLE = """
CREATE TABLE plain_events (
    id bigserial PRIMARY KEY, chron_id text NOT NULL UNIQUE, kind text NOT NULL, stream text NOT NULL,
    stream_seq bigint NOT NULL, subject text NOT NULL, org text NOT NULL, agent_id text NOT NULL, actor text NOT NULL,
    outcome text NOT NULL, action text NOT NULL, target text NOT NULL, anchor text NOT NULL, policy text NOT NULL,
    skill text NOT NULL, reason text NOT NULL, rule text NOT NULL, gate text NOT NULL, control_seq bigint NOT NULL,
    occurred_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(), event bytea NOT NULL,
    trace_id text, approval_id text, UNIQUE (stream, stream_seq));
CREATE INDEX plain_agent ON plain_events (agent_id, id);
CREATE INDEX plain_occurred ON plain_events (occurred_at);
CREATE INDEX plain_org ON plain_events (org, id);
"""


def decision(i: int) -> DecisionEvent:
    allow = i % 4 != 0
    return DecisionEvent(
        chron_id=chron_id(1_764_000_000_000 + i, i.to_bytes(10, "big")), decided_at=rfc3339(1_764_000_000_000_000 + i),
        outcome="ALLOW" if allow else "DENY",
        reason="policy:no-prod-v1 -- action allowed" if allow else "policy:no-prod-v1 -- action explicitly denied",
        rule="allow[0]: deploy:staging" if allow else "deny[0]: deploy:production", org="demo",
        agent_id=f"bot-{i % 50}", anchor="s.emp1", action="deploy:staging" if allow else "deploy:production",
        target="api-v2", context={}, request_id=None, policy="no-prod-v1", skill="deploy-v2", gate="bench",
        control_seq=9)


def ms(values: list[float]) -> str:
    values = sorted(values)
    return (f"p50 {statistics.median(values) * 1000:.2f} ms, p99 {values[int(len(values) * 0.99) - 1] * 1000:.2f} ms, "
            f"max {values[-1] * 1000:.2f} ms")


PLAIN_METHODS = ("executemany", "unnest", "copy")


async def plain_inserts(db_url: str, rows: list[Row], method: str) -> float:
    """Seconds to store ``rows`` in a fresh table of Chron's shape, 1,000 rows per transaction, by
    ``method``: ``executemany`` of one INSERT, one INSERT of ``unnest`` arrays, or a binary COPY."""
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("DROP TABLE IF EXISTS plain_events")
        await conn.execute(PLAIN_TABLE)
        columns = ", ".join(ROW_COLUMNS)
        types = ["text", "text", "text", "int8", "text", "text", "text", "text", "text", "text", "text", "text",
                 "text", "text", "text", "text", "text", "int8", "timestamptz", "bytea", "text", "text"]
        arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, start=1))
        unnest = f"INSERT INTO plain_events ({columns}) SELECT * FROM unnest({arrays})"
        values = f"INSERT INTO plain_events ({columns}) VALUES ({', '.join(f'${i}' for i in range(1, len(types) + 1))})"
        started = time.perf_counter()
        for k in range(0, len(rows), BATCH):
            batch = rows[k:k + BATCH]
            async with conn.transaction():
                if method == "executemany":
                    await conn.executemany(values, batch)
                elif method == "unnest":
                    await conn.execute(unnest, *[list(c) for c in zip(*batch, strict=True)])
                else:
                    await conn.copy_records_to_table("plain_events", records=batch, columns=ROW_COLUMNS)
        return time.perf_counter() - started
    finally:
        await conn.close()


GATE_KEY = GateKey("bench-gate", secrets.token_bytes(32))
GATE_KEYS = GateKeyring([Trusted(GATE_KEY)])
CONTROL_KEYS = ControlKeyring([Trusted(Signer.from_seed("bench-control", secrets.token_bytes(32)).verifier)])


async def chron_ingest(nats_url: str, db_url: str, names: Names, data: list[bytes], signer: Signer,
                       with_ocsf: bool, profile: cProfile.Profile | None = None) -> tuple[float, list[float]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, names)
    started = time.perf_counter()
    pending = []
    for i, payload in enumerate(data):
        outcome = "allow" if i % 4 != 0 else "deny"  # as decision(i) says: a MAC binds it to its subject
        pending.append(js.publish(names.decision_subject("demo", f"bot-{i % 50}", outcome), payload,
                                  headers={"Nats-Msg-Id": decision(i).chron_id}))
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    print(f"  published a backlog of {len(data):,} decisions in {time.perf_counter() - started:.1f} s")
    store = await ChronStore.open(db_url)
    follower = RegistryFollower(js, names, CONTROL_KEYS, keep_rejections=True)
    await follower.start()
    chron = ChronService(nc, js, names, store, follower, GATE_KEYS, b"x", "operator", BATCH, signer, "claiim/bench",
                         5.0)
    signed: list[float] = []
    original = chron.checkpoint

    async def timed_checkpoint() -> Checkpoint | None:
        result = await original()
        if result is not None:
            signed.append(time.perf_counter())
        return result

    chron.checkpoint = timed_checkpoint  # type: ignore[method-assign]
    ocsf = OcsfFeed(nc, names, BATCH, GATE_KEYS) if with_ocsf else None
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    await chron.start()
    if ocsf is not None:
        await ocsf.start()
    for _ in range(1_000_000):
        if chron.stored >= len(data):
            break
        if chron.parked:
            raise RuntimeError(f"Chron parked {chron.parked} decisions")
        await asyncio.sleep(0.01)
    took = time.perf_counter() - started
    if profile is not None:
        profile.disable()
    if ocsf is not None:
        await ocsf.stop()
    await chron.stop()
    await follower.stop()
    await store.close()
    intervals = [b - a for a, b in zip([started, *signed], signed, strict=False)]
    await nc.close()
    return took, intervals


async def proofs_at_scale(db_url: str, n: int) -> None:
    store = await ChronStore.open(db_url)
    try:
        started = time.perf_counter()
        step = 10_000
        feed: list[tuple[str, bytes]] = []
        for k in range(0, n, step):
            rows = [decision_row("BENCH", i + 1, "bench.decision", canonical_bytes(decision(i)))
                    for i in range(k, min(n, k + step))]
            feed += (await store.append(rows, [])).leaves
        took = time.perf_counter() - started
        size = store.frontier.size
        root = store.frontier.root()
        print(f"  wrote a log of {size:,} leaves with ChronStore.append in {took:.1f} s ({size / took:,.0f} leaves/s)")
        signer = Signer.from_seed("bench-large", secrets.token_bytes(32))
        note = signer.sign(Checkpoint("bench-large", size, root, rfc3339(time.time_ns() // 1000)))
        conn = await asyncpg.connect(db_url)
        try:
            report = await verify_log(conn, signer.verifier, Evidence([note], [(0, feed)]), max_age=1e9)
        finally:
            await conn.close()
        assert report.ok, report.lines()
        print(f"  (4) chron verify at {size:,} leaves against a signed checkpoint and the feed: {report.seconds:.1f} s "
              f"({report.leaves / report.seconds:,.0f} leaves/s)")
        del feed
        rng = random.Random(6962)
        times = []
        for _ in range(1000):
            index = rng.randrange(size)
            t = time.perf_counter()
            ranges = inclusion_ranges(index, size)
            proof = proof_from(ranges, await store.nodes(nodes_for(ranges)))
            leaf = (await store.nodes({(0, index)}))[(0, index)]
            assert verify_inclusion(index, size, leaf, proof, root)
            times.append(time.perf_counter() - t)
        print(f"  (4) inclusion proof at {size:,} leaves, read from PostgreSQL and verified: {ms(times)} "
              f"({len(proof)} hashes)")
        times = []
        for _ in range(100):
            first = rng.randrange(1, size)
            t = time.perf_counter()
            ranges = consistency_ranges(first, size)
            nodes = await store.nodes(nodes_for(ranges) | set(nodes_for([(0, first)])))
            first_root = proof_from([(0, first)], nodes)[0]
            assert verify_consistency(first, size, proof_from(ranges, nodes), first_root, root)
            times.append(time.perf_counter() - t)
        print(f"  (4) consistency proof to {size:,} leaves, read and verified: {ms(times)}")
    finally:
        await store.close()


async def main(backlog: int, proof_leaves: int, top: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        server = start_nats(free_port(), Path(d) / "nats")
        pg: Any
        pg, server_url = start_postgres(Path(d) / "pg")
        try:
            print(f"cpus={os.cpu_count()}; backlog {backlog:,} decisions, batches of {BATCH}")
            data = [seal_decision(decision(i), GATE_KEY) for i in range(backlog)]
            rows = [decision_row("BENCH_DECISIONS", i + 1, "bench.decision", payload) for i, payload in enumerate(data)]
            plain_db = await ensure_database(server_url, "plain")
            plains = {m: await plain_inserts(plain_db, rows, m) for m in PLAIN_METHODS}
            for m, t in plains.items():
                print(f"  (1) plain asyncpg {m}: {backlog / t:,.0f} rows/s ({t:.1f} s)")
            plain = plains["executemany"]
            names = Names("bench")
            signer = Signer.from_seed("bench", secrets.token_bytes(32))
            chron_db = await ensure_database(server_url, "chron")
            profile = cProfile.Profile() if top else None
            took, intervals = await chron_ingest(server.url, chron_db, names, data, signer, with_ocsf=False,
                                                 profile=profile)
            if profile is not None:
                pstats.Stats(profile).sort_stats("tottime").print_stats(top)
            print(f"  (2) Chron with the Merkle log: {backlog / took:,.0f} leaves/s ({took:.1f} s) = "
                  f"{plain / took:.2f} of the plain executemany rate")
            print(f"      checkpoints while draining: {len(intervals)}, intervals "
                  f"{', '.join(f'{x:.2f}' for x in intervals)} s")
            took2, _ = await chron_ingest(server.url, await ensure_database(server_url, "chron2"), Names("bench2"),
                                          data, signer, with_ocsf=True)
            print(f"  (2') the same with the OCSF feed in the same process: {backlog / took2:,.0f} leaves/s "
                  f"({took2:.1f} s) = {plain / took2:.2f} of the plain executemany rate")
            nc = await nats.connect(server.url)
            evidence = await evidence_from_stream(nc.jetstream(), names)
            await nc.close()
            conn = await asyncpg.connect(chron_db)
            report = await verify_log(conn, signer.verifier, evidence,
                                      auth=StreamAuthenticator(names, GATE_KEYS, CONTROL_KEYS))
            await conn.close()
            assert report.ok, report.lines()
            print(f"  (3) chron verify: {report.leaves:,} leaves in {report.seconds:.1f} s = "
                  f"{report.leaves / report.seconds:,.0f} leaves/s")
            if proof_leaves:
                await proofs_at_scale(await ensure_database(server_url, "large"), proof_leaves)
        finally:
            pg.cleanup()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--proof-leaves", type=int, default=1_000_000)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile (2) and print its top N functions by own time (slows it down)")
    args = parser.parse_args()
    asyncio.run(main(args.backlog, args.proof_leaves, args.profile))
