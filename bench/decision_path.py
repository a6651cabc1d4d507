"""The decision path end to end: embedded gate + control + Chron (PostgreSQL), agents in another process.

Run: ``.venv/bin/python bench/decision_path.py [--n 2000] [--duration 5] [--inflight 128] [--chron-n 200]``

It starts its own nats-server (free port on 127.0.0.1, claiim's configuration: NATS authentication on)
and PostgreSQL (pgserver), both in a temporary directory, runs the gate, control handler, Chron, the
OCSF feed and the auth service in this process (as ``claiim up`` does), applies the demo bundle, and
drives the gate from a spawned process as the demo agent ``deploy-bot`` (logged in with its token)
checking ``deploy:staging`` (ALLOW). Measured:

  (i)   one agent, sync SDK ``Gate.check`` in a loop, N calls: decisions/s, p50/p99;
  (ii)  ``AsyncGate`` with 128 checks in flight for ~5 s: decisions/s, p50/p99;
  (iv)  right after (ii): time from the end of the load until every decision in the stream is a row of
        ``chron_events`` (drain), polled every 10 ms;
  (iii) then, on the idle stack: for 200 decisions, the time from the reply to the row being visible in
        PostgreSQL, polled every 2 ms. By default the decisions are made one at a time, each waiting for
        its row (``SELECT 1 FROM chron_events WHERE chron_id=$1``). With ``--chron-interval S`` one
        decision is made every S seconds regardless, and one poller looks for all outstanding ids at once
        (``chron_id = ANY($1)``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import stack
from claiim import AsyncAdmin, AsyncGate, Gate
from claiim_core.names import Names
from claiim_core.schemas import CheckRequest
from claiim_core.tokens import inbox_prefix
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import RunningServices, start_services
from claiim_server.servers import NatsCredentials, ensure_database, free_port, start_nats, start_postgres
from claiim_server.stack import demo_bundle

AGENT = "deploy-bot"
ACTION = "deploy:staging"
TARGET = "api-v2"


@dataclass
class Calls:
    """Latencies (seconds) of one measured phase and what came back."""

    lat: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    not_allowed: int = 0
    end_wall: float = 0.0  # time.time() when the phase ended (to time the drain in the other process)

    @property
    def rate(self) -> float:
        return len(self.lat) / self.seconds if self.seconds else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Agent side (runs in a spawned child process)


def sync_loop(url: str, token: str, n: int, warmup: int) -> Calls:
    """(i) one agent, sync SDK, ``n`` checks one after the other."""
    calls = Calls()
    perf = time.perf_counter
    with Gate(agent_id=AGENT, token=token, url=url) as gate:
        for _ in range(warmup):
            gate.check(ACTION, TARGET)
        start = perf()
        for _ in range(n):
            t0 = perf()
            try:
                reply = gate.check(ACTION, TARGET)
            except Exception:
                calls.errors += 1
                continue
            calls.lat.append(perf() - t0)
            if reply.outcome != "ALLOW":
                calls.not_allowed += 1
        calls.seconds = perf() - start
    calls.end_wall = time.time()
    return calls


def async_load(url: str, token: str, inflight: int, duration: float, warmup: float) -> Calls:
    return asyncio.run(_async_load(url, token, inflight, duration, warmup))


async def _async_load(url: str, token: str, inflight: int, duration: float, warmup: float) -> Calls:
    """(ii) ``inflight`` checks in flight on one AsyncGate for ``duration`` seconds."""
    gate = AsyncGate(AGENT, token, url)
    perf = time.perf_counter

    async def caller(stop_at: float, calls: Calls) -> None:
        while (t0 := perf()) < stop_at:
            try:
                reply = await gate.check(ACTION, TARGET)
            except Exception:
                calls.errors += 1
                continue
            calls.lat.append(perf() - t0)
            if reply.outcome != "ALLOW":
                calls.not_allowed += 1

    async def phase(seconds: float) -> Calls:
        calls = Calls()
        start = perf()
        await asyncio.gather(*(caller(start + seconds, calls) for _ in range(inflight)))
        calls.seconds = perf() - start
        calls.end_wall = time.time()
        return calls

    try:
        await phase(warmup)
        return await phase(duration)
    finally:
        await gate.close()


def chron_latency(url: str, token: str, db_url: str, n: int, interval: float) -> Calls:
    return asyncio.run(_chron_latency(url, token, db_url, n, interval))


async def _chron_latency(url: str, token: str, db_url: str, n: int, interval: float) -> Calls:
    """(iii) time from the gate's reply to the decision's row being visible in PostgreSQL."""
    gate = AsyncGate(AGENT, token, url)
    conn = await asyncpg.connect(db_url)
    calls = Calls()
    perf = time.perf_counter
    pending: dict[str, float] = {}  # chron_id -> when its reply arrived
    issuing = True

    async def poll_all() -> None:
        while issuing or pending:
            if pending:
                found = await conn.fetch("SELECT chron_id FROM chron_events WHERE chron_id = ANY($1::text[])",
                                         list(pending))
                now = perf()
                for row in found:
                    calls.lat.append(now - pending.pop(row["chron_id"]))
            await asyncio.sleep(0.002)

    try:
        await gate.check(ACTION, TARGET)  # connect first
        start = perf()
        if interval <= 0:  # one decision at a time, each waiting for its own row
            for _ in range(n):
                reply = await gate.check(ACTION, TARGET)
                t0 = perf()
                if not reply.chron_id:
                    calls.errors += 1
                    continue
                while True:  # poll every 2 ms
                    if await conn.fetchval("SELECT 1 FROM chron_events WHERE chron_id=$1", reply.chron_id):
                        break
                    await asyncio.sleep(0.002)
                calls.lat.append(perf() - t0)
        else:
            poller = asyncio.create_task(poll_all())
            try:
                for i in range(n):
                    reply = await gate.check(ACTION, TARGET)
                    if reply.chron_id:
                        pending[reply.chron_id] = perf()
                    else:
                        calls.errors += 1
                    await asyncio.sleep(max(0.0, start + (i + 1) * interval - perf()))
                issuing = False
                await asyncio.wait_for(poller, timeout=30)
            finally:
                poller.cancel()
        calls.seconds = perf() - start
    finally:
        await conn.close()
        await gate.close()
    return calls


# ---------------------------------------------------------------------------------------------------------
# Stack side (this process)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))] * 1000


async def wait_allowed(url: str, subject: str, token: str) -> None:
    """The gate's registry follower applies the bundle asynchronously: wait until it allows."""
    payload = msgspec.json.encode(CheckRequest(agent_id=AGENT, token=token, action=ACTION, target=TARGET))
    nc = await nats.connect(url, name="bench-probe", user=AGENT, password=token, inbox_prefix=inbox_prefix(token))
    try:
        deadline = time.monotonic() + 10
        while b'"outcome":"ALLOW"' not in (msg := await nc.request(subject, payload, timeout=5)).data:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gate does not allow the bench request: {msg.data!r}")
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def demo_token(settings: Settings) -> str:
    """Apply the demo bundle and wait until the gate allows the bench request; the agent's token."""
    admin = AsyncAdmin(settings.url, settings.require_admin_token())
    try:
        token = (await admin.apply(demo_bundle())).tokens[AGENT]
    finally:
        await admin.close()
    await wait_allowed(settings.url, settings.names.gate_check, token)
    return token


@dataclass
class Drain:
    seconds: float
    rows: int
    backlog_first_poll: int


async def measure_drain(settings: Settings, credentials: NatsCredentials, db_url: str, end_wall: float) -> Drain:
    """(iv) from ``end_wall`` until ``chron_events`` holds every decision of the decisions stream."""
    nc = await stack.maintenance(settings.url, credentials)
    try:
        info = await nc.jetstream().stream_info(settings.names.decisions_stream)
    finally:
        await nc.close()
    expected = info.state.messages  # every reply waited for its PubAck: nothing more is coming
    conn = await asyncpg.connect(db_url)
    try:
        backlog: int | None = None
        deadline = time.monotonic() + 60
        while True:
            count = await conn.fetchval("SELECT count(*) FROM chron_events WHERE kind = 'decision'")
            done = time.time()
            if backlog is None:
                backlog = expected - count
            if count >= expected:
                return Drain(max(0.0, done - end_wall), count, backlog)
            if time.monotonic() > deadline:
                raise RuntimeError(f"Chron has {count} of {expected} decisions after 60 s")
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    loop = asyncio.get_running_loop()
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="claiim-bench-") as tmp, \
            ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        warm_child = loop.run_in_executor(pool, pct, [0.0], 50)  # spawn + imports, off the clock
        credentials = stack.credentials()
        nats_server = start_nats(free_port(), Path(tmp) / "nats", credentials=credentials, names=Names())
        pg: Any = None
        running: RunningServices | None = None
        try:
            pg, server_url = await asyncio.to_thread(start_postgres, Path(tmp) / "pg")
            db_url = await ensure_database(server_url, "claiim_bench")
            settings = stack.settings(nats_server.url, db_url, credentials)
            running = await start_services(settings, instance="bench")
            token = await demo_token(settings)
            await warm_child
            print(f"stack up in {time.monotonic() - t_start:.1f}s: nats {settings.url}, PostgreSQL (pgserver), "
                  f"gate+control+chron+ocsf+auth in pid {os.getpid()}, chron_batch={settings.chron_batch}; "
                  f"cpus={os.cpu_count()}", flush=True)

            sync_calls = await loop.run_in_executor(pool, sync_loop, settings.url, token, args.n, 100)
            print(f"  (i) sync loop done: {sync_calls.rate:,.0f}/s", flush=True)
            load_calls = await loop.run_in_executor(pool, async_load, settings.url, token, args.inflight,
                                                    args.duration, 1.0)
            drain = await measure_drain(settings, credentials, db_url, load_calls.end_wall)
            print(f"  (ii) load done: {load_calls.rate:,.0f}/s; (iv) drained in {drain.seconds:.2f}s", flush=True)
            chron_calls = await loop.run_in_executor(pool, chron_latency, settings.url, token, db_url,
                                                     args.chron_n, args.chron_interval)
            print(f"  (iii) chron latency done ({len(chron_calls.lat)} decisions)", flush=True)
            assert running.chron is not None
            stored, parked = running.chron.stored, running.chron.parked
        finally:
            if running is not None:
                await running.stop()
            nats_server.stop()
            if pg is not None:
                await asyncio.to_thread(pg.cleanup)
    report(args, sync_calls, load_calls, chron_calls, drain, stored, parked)
    print(f"total run time {time.monotonic() - t_start:.1f}s")


def report(args: argparse.Namespace, sync_calls: Calls, load_calls: Calls, chron_calls: Calls, drain: Drain,
           stored: int, parked: int) -> None:
    mode = ("one at a time" if args.chron_interval <= 0
            else f"1 per {args.chron_interval * 1000:g} ms")
    head = f"{'measure':<50} {'count':>7} {'per s':>8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'errors':>6}"
    print()
    print(head)
    print("─" * len(head))

    def line(name: str, calls: Calls, rate: bool = True) -> None:
        per_s = f"{calls.rate:>8,.0f}" if rate else f"{'':>8}"
        print(f"{name:<50} {len(calls.lat):>7} {per_s} {pct(calls.lat, 50):>9.2f} {pct(calls.lat, 99):>9.2f} "
              f"{pct(calls.lat, 100):>9.2f} {calls.errors + calls.not_allowed:>6}")

    line("(i)   sync Gate.check, 1 agent in a loop", sync_calls)
    line(f"(ii)  AsyncGate, {args.inflight} in flight, {load_calls.seconds:.1f}s", load_calls)
    line(f"(iii) reply -> row in chron_events ({mode})", chron_calls, rate=False)
    print(f"{'(iv)  Chron drain after (ii)':<50} {drain.rows:>7} {'':>8} {'':>9} {'':>9} "
          f"{drain.seconds * 1000:>9.0f} {'':>6}")
    print(f"\n(iv): {drain.seconds:.2f}s from the end of the load until chron_events held all {drain.rows} decisions "
          f"of the stream ({drain.backlog_first_poll} rows missing at the first poll).")
    print(f"Chron stored {stored} rows ({parked} parked) during the run. errors = transport errors + non-ALLOW "
          f"replies (for (iii): replies without chron_id).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="checks in the sync loop (i)")
    parser.add_argument("--inflight", type=int, default=128, help="checks in flight in (ii)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured in (ii)")
    parser.add_argument("--chron-n", type=int, default=200, help="decisions timed to Chron in (iii)")
    parser.add_argument("--chron-interval", type=float, default=0.0,
                        help="seconds between decisions in (iii); 0: one at a time, each waiting for its row")
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
