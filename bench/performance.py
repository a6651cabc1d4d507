"""The gate against its baselines, in one run: ``claiim up`` as users run it, a bare nats-py echo, Cedar.

Run: ``.venv/bin/python bench/performance.py [--workers 1,2,4] [--seconds 3] [--rounds 3]``
(Cedar needs ``pip install cedarpy``, in the ``bench`` extra; without it that row is skipped.)

For each gate worker count it starts ``claiim up --gate-workers N`` (its own nats-server and
PostgreSQL in a temporary directory), and measures from a spawned process, as the demo agent
``deploy-bot`` checking ``deploy:staging`` (ALLOW) with ``AsyncGate``:

- one check in flight for ``--seconds``: p50 and p99 latency;
- 128 checks in flight for ``--seconds``: decisions per second;
- with ``--sustain-workers`` (``claiim up``'s default): checks sent on schedule at each ``--sustain-rates`` for
  ``--sustain-seconds``, the time from each reply to its row in Chron (the OCSF feed running).

The baselines are a bare nats-py responder that echoes each request (its own process, its own plain
nats-server, the same client code and load), and the same responder answering only after JetStream
stored the request (the least any record-before-reply design does), measured the same way in the
same run. Cedar
(``cedarpy.is_authorized``, one policy of the same meaning, in process: no network, no record) is
timed per call. Every figure is the median of ``--rounds`` rounds; ratios are to the same run's echo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
from claiim import AsyncGate, ClaiimError
from claiim_server.servers import free_port, start_nats
from claiim_server.workers import default_workers

CLAIIM = str(Path(sys.executable).parent / "claiim")
AGENT, ACTION, TARGET = "deploy-bot", "deploy:staging", "api-v2"
ECHO_SUBJECT = "bench.echo"


@dataclass
class Round:
    p50_ms: float
    p99_ms: float
    rate: float


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))] * 1000


async def _measure(call: Callable[[], Awaitable[object]], seconds: float) -> Round:
    """One in flight for ``seconds`` (latency), then 128 in flight for ``seconds`` (rate)."""
    perf = time.perf_counter
    for _ in range(200):
        await call()
    lat: list[float] = []
    stop = perf() + seconds
    while (t0 := perf()) < stop:
        await call()
        lat.append(perf() - t0)
    done = 0

    async def worker(until: float) -> None:
        nonlocal done
        while perf() < until:
            await call()
            done += 1

    start = perf()
    await asyncio.gather(*(worker(start + seconds) for _ in range(128)))
    return Round(pct(lat, 50), pct(lat, 99), done / (perf() - start))


def gate_round(url: str, token: str, seconds: float) -> Round:
    async def run() -> Round:
        async with AsyncGate(AGENT, token, url, timeout=10) as gate:
            async def call() -> object:
                reply = await gate.check(action=ACTION, target=TARGET)
                if reply.outcome != "ALLOW":
                    raise RuntimeError(f"the bench check was not allowed: {reply.reason}")
                return reply
            return await _measure(call, seconds)
    return asyncio.run(run())


@dataclass
class Sustained:
    sent: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    failed: int
    """Checks that raised (``GateUnavailableError``: no answer within the SDK's deadline)."""


def sustained(url: str, token: str, db_url: str, rate: int, seconds: float) -> Sustained:
    """Once Chron holds everything decided before, checks at ``rate`` per second for ``seconds`` (open loop:
    sent on schedule, however many are in flight); for each, the time from its reply to its row in
    ``chron_events`` (polled every 10 ms)."""
    async def run() -> Sustained:
        replied: dict[str, float] = {}
        early: set[str] = set()
        lat: list[float] = []
        sending = True
        conn = await asyncpg.connect(db_url)
        perf = time.perf_counter

        async def poll() -> None:
            last = await conn.fetchval("SELECT coalesce(max(leaf_index), -1) FROM chron_events")
            while sending or replied:
                rows = await conn.fetch("SELECT leaf_index, chron_id FROM chron_events WHERE leaf_index > $1 "
                                        "ORDER BY leaf_index", last)
                now = perf()
                for row in rows:
                    last = row["leaf_index"]
                    if (t := replied.pop(row["chron_id"], None)) is not None:
                        lat.append(now - t)
                    else:  # stored before its reply reached the caller
                        early.add(row["chron_id"])
                await asyncio.sleep(0.01)

        failed = 0
        async with AsyncGate(AGENT, token, url, timeout=10) as gate:
            async def one() -> None:
                nonlocal failed
                try:
                    reply = await gate.check(action=ACTION, target=TARGET)
                except ClaiimError:
                    failed += 1
                    return
                if reply.chron_id in early:
                    early.discard(reply.chron_id)
                    lat.append(0.0)
                elif reply.chron_id:
                    replied[reply.chron_id] = perf()

            probe = await gate.check(action=ACTION, target=TARGET)  # Chron caught up with what came before
            deadline = perf() + 120
            while not await conn.fetchval("SELECT 1 FROM chron_events WHERE chron_id = $1", probe.chron_id):
                if perf() > deadline:
                    raise RuntimeError("Chron did not store the probe decision within 120 s")
                await asyncio.sleep(0.05)
            poller = asyncio.create_task(poll())
            tasks: set[asyncio.Task[None]] = set()
            start = perf()
            sent = 0
            while (elapsed := perf() - start) < seconds:
                for _ in range(int(elapsed * rate) - sent):
                    task = asyncio.create_task(one())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks, return_exceptions=True)
            took = perf() - start
            sending = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poller, 30)
        await conn.close()
        return Sustained(sent, sent / took, pct(lat, 50), pct(lat, 99), pct(lat, 100), len(replied), failed)
    return asyncio.run(run())


def echo_round(url: str, seconds: float) -> Round:
    async def run() -> Round:
        nc = await nats.connect(url)
        payload = json.dumps({"agent_id": AGENT, "action": ACTION, "target": TARGET}).encode()
        try:
            deadline = time.monotonic() + 30
            while True:  # until the responder (another process) has subscribed
                try:
                    await nc.request(ECHO_SUBJECT, payload, timeout=1)
                    break
                except nats.errors.NoRespondersError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            return await _measure(lambda: nc.request(ECHO_SUBJECT, payload, timeout=10), seconds)
        finally:
            await nc.close()
    return asyncio.run(run())


def echo_server(url: str, durable: bool) -> None:
    """A bare nats-py responder: every request answered with its own payload; with ``durable``, only
    after JetStream stored it (published to a file stream, answered on its PubAck)."""
    async def run() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        tasks: set[asyncio.Task[None]] = set()
        if durable:
            await js.add_stream(name="BENCH", subjects=["bench.log"])

        async def stored(msg: nats.aio.msg.Msg) -> None:
            await js.publish("bench.log", msg.data)
            await nc.publish(msg.reply, msg.data)

        async def reply(msg: nats.aio.msg.Msg) -> None:
            if not durable:
                await nc.publish(msg.reply, msg.data)
                return
            task = asyncio.create_task(stored(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await nc.subscribe(ECHO_SUBJECT, queue="echo", cb=reply, pending_msgs_limit=100_000)
        await asyncio.Event().wait()
    asyncio.run(run())


def cedar_round(seconds: float) -> Round | None:
    try:
        import cedarpy  # type: ignore[import-not-found]
    except ImportError:
        return None
    policies = ('permit(principal == Agent::"deploy-bot", action in [Action::"deploy:staging", Action::"deploy:dev"], '
                'resource);\nforbid(principal, action == Action::"deploy:production", resource);')
    request = {"principal": f'Agent::"{AGENT}"', "action": f'Action::"{ACTION}"', "resource": f'Target::"{TARGET}"',
               "context": {}}
    perf = time.perf_counter
    if cedarpy.is_authorized(request, policies, []).decision != cedarpy.Decision.Allow:
        raise RuntimeError("cedar does not allow the bench request")
    lat: list[float] = []
    stop = perf() + seconds
    while (t0 := perf()) < stop:
        cedarpy.is_authorized(request, policies, [])
        lat.append(perf() - t0)
    return Round(pct(lat, 50), pct(lat, 99), len(lat) / seconds)


def start_up(data_dir: Path, workers: int) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    log = data_dir.parent / f"up-{workers}.log"
    with log.open("wb") as out:
        up = subprocess.Popen([CLAIIM, "up", "--data-dir", str(data_dir), "--nats-port", str(port), "--ui-port", "0",
                               "--gate-workers", str(workers)], stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    while b"claiim ready" not in log.read_bytes():
        if up.poll() is not None or time.monotonic() > deadline:
            up.kill()
            raise RuntimeError(f"claiim up did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    token = json.loads((data_dir / "demo-tokens.json").read_text())[AGENT]
    return up, f"nats://127.0.0.1:{port}", token


def env_of(data_dir: Path) -> dict[str, str]:
    """The variables ``claiim up`` wrote to DIR/env."""
    return dict(line.split("=", 1) for line in (data_dir / "env").read_text().splitlines() if "=" in line)


def stop_up(up: subprocess.Popen[bytes]) -> None:
    os.killpg(up.pid, signal.SIGINT)
    try:
        up.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait(timeout=10)


def median(rounds: list[Round]) -> Round:
    return Round(statistics.median(r.p50_ms for r in rounds), statistics.median(r.p99_ms for r in rounds),
                 statistics.median(r.rate for r in rounds))


def main(args: argparse.Namespace) -> None:
    spawn = mp.get_context("spawn")
    results: dict[str, Round] = {}
    held: dict[int, Sustained] = {}
    with tempfile.TemporaryDirectory(prefix="claiim-perf-") as tmp, \
            ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        for durable, name in ((False, "bare nats-py echo"), (True, "echo after a JetStream PubAck")):
            plain = start_nats(free_port(), Path(tmp) / f"echo-nats-{durable}")
            echo = spawn.Process(target=echo_server, args=(plain.url, durable), daemon=True)
            echo.start()
            try:
                results[name] = median([pool.submit(echo_round, plain.url, args.seconds).result()
                                        for _ in range(args.rounds)])
            finally:
                echo.terminate()
                echo.join(5)
                plain.stop()
        for workers in args.workers:
            up, url, token = start_up(Path(tmp) / f"up-{workers}", workers)
            try:
                results[f"claiim gate, {workers} worker(s)"] = median(
                    [pool.submit(gate_round, url, token, args.seconds).result() for _ in range(args.rounds)])
                if args.sustain_seconds and workers == args.sustain_workers:
                    db_url = env_of(Path(tmp) / f"up-{workers}")["CLAIIM_DATABASE_URL"]
                    for rate in args.sustain_rates:
                        held[rate] = pool.submit(sustained, url, token, db_url, rate, args.sustain_seconds).result()
            finally:
                stop_up(up)
        cedar = [r for r in (pool.submit(cedar_round, args.seconds).result() for _ in range(args.rounds)) if r]
        if cedar:
            results["Cedar (cedarpy, in process, no record)"] = median(cedar)
    echo_rate = results["bare nats-py echo"].rate
    head = f"{'':<42} {'1 in flight p50 ms':>18} {'p99 ms':>8} {'128 in flight /s':>17} {'x echo':>7}"
    print(f"\ncpus={os.cpu_count()}, {args.rounds} rounds of {args.seconds:g} s each, medians\n")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        print(f"{name:<42} {r.p50_ms:>18.3f} {r.p99_ms:>8.3f} {r.rate:>17,.0f} {r.rate / echo_rate:>7.2f}")
    if held:
        print(f"\ndecision reply -> row in chron_events, {args.sustain_workers} gate worker(s), OCSF feed running, "
              f"{args.sustain_seconds:g} s at each rate")
        print(f"{'asked /s':>9} {'sent':>9} {'sent /s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'no row':>7} "
              f"{'failed':>9}")
        for rate, h in held.items():
            print(f"{rate:>9,} {h.sent:>9,} {h.rate:>9,.0f} {h.p50_ms:>8.1f} {h.p99_ms:>8.1f} {h.max_ms:>8.1f} "
                  f"{h.missing:>7} {h.failed:>9,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sustain-rates", type=lambda s: [int(x) for x in s.split(",")], default=[2000, 5000],
                        help="checks per second held for --sustain-seconds, timing each reply to its Chron row")
    parser.add_argument("--sustain-seconds", type=float, default=60.0, help="0: skip")
    parser.add_argument("--sustain-workers", type=int, default=default_workers(),
                        help="the gate workers of the stack the rates are held on (one of --workers; default: claiim "
                             "up's default for this machine)")
    main(parser.parse_args(sys.argv[1:]))
