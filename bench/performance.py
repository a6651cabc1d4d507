"""The gate against its baselines, in one run: ``claiim up`` as users run it, a bare nats-py echo, Cedar.

Run: ``.venv/bin/python bench/performance.py [--workers 1,2,4] [--seconds 3] [--rounds 3]``
(Cedar needs ``pip install cedarpy``, in the ``bench`` extra; without it that row is skipped.)

For each gate worker count it starts ``claiim up --gate-workers N`` (its own nats-server and
PostgreSQL in a temporary directory), and measures from a spawned process, as the demo agent
``deploy-bot`` checking ``deploy:staging`` (ALLOW) with ``AsyncGate``:

- one check in flight for ``--seconds``: p50 and p99 latency;
- 128 checks in flight for ``--seconds``: decisions per second.

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

import nats
from claiim import AsyncGate
from claiim._servers import free_port, start_nats

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


def echo_round(url: str, seconds: float) -> Round:
    async def run() -> Round:
        nc = await nats.connect(url)
        payload = json.dumps({"agent_id": AGENT, "action": ACTION, "target": TARGET}).encode()
        try:
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
    with tempfile.TemporaryDirectory(prefix="claiim-perf-") as tmp, \
            ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        for durable, name in ((False, "bare nats-py echo"), (True, "echo after a JetStream PubAck")):
            plain = start_nats(free_port(), Path(tmp) / f"echo-nats-{durable}")
            echo = spawn.Process(target=echo_server, args=(plain.url, durable), daemon=True)
            echo.start()
            try:
                time.sleep(1.0)
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args(sys.argv[1:]))
