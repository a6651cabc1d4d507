"""What a rule's condition and a log-only candidate cost the gate: the same check by three agents whose policies
differ only in that, against one gate in this process, in alternating rounds of one run.

Run: ``.venv/bin/python bench/policy_cost.py [--inflight 128] [--seconds 3] [--calls 300] [--rounds 3]``

It starts its own nats-server and PostgreSQL, runs control, Chron, the OCSF feed and the auth service as a
``claiim serve`` process and the gate in this process, and applies the demo bundle plus:

- ``plain``: deploy-bot, bound to no-prod-v1 (``allow: deploy:staging``);
- ``condition``: cond-bot, bound to a policy whose allow rule is ``deploy:staging`` when
  ``int(context.amount_cents) < 5000``;
- ``log-only candidate``: shadow-bot, bound to no-prod-v1 with strict-v1 evaluated beside it.

Every check is ``deploy:staging`` on ``api-v2`` with the context ``{amount_cents: "1200"}``, and is an ALLOW. Per
round and agent: ``--calls`` checks one at a time (p50, p99), then ``--inflight`` in flight for ``--seconds``
(decisions/s, and the gate's CPU per decision: this process's CPU over the phase). A spawned process drives
the load. Prints medians over rounds and ratios to ``plain``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from claiim import AsyncAdmin, AsyncGate
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.stack import demo_bundle
from decision_path import pct
from gate_profile import backend_stack

CONTEXT = {"amount_cents": "1200"}
BUNDLE = {"org": "demo",
          "policies": [{"name": "cond", "version": 1, "skill": "deploy-v2",
                        "allow": [{"action": "deploy:staging", "when": "int(context.amount_cents) < 5000"}]},
                       {"name": "strict", "version": 1, "skill": "deploy-v2", "allow": ["health:check"],
                        "deny": ["deploy:*"]}],
          "agents": [{"id": "cond-bot", "anchor": "s.emp1", "skills": ["deploy-v2"], "policy": "cond-v1"},
                     {"id": "shadow-bot", "anchor": "s.emp1", "skills": ["deploy-v2"], "policy": "no-prod-v1"}]}
MODES = {"plain": "deploy-bot", "condition": "cond-bot", "log-only candidate": "shadow-bot"}


def load(url: str, agent: str, token: str, inflight: int, seconds: float, calls: int) -> tuple[list[float], float]:
    """Latencies of ``calls`` sequential checks, and decisions/s with ``inflight`` in flight for ``seconds``."""
    return asyncio.run(_load(url, agent, token, inflight, seconds, calls))


async def _load(url: str, agent: str, token: str, inflight: int, seconds: float,
                calls: int) -> tuple[list[float], float]:
    async with AsyncGate(agent, token, url) as gate:
        for _ in range(20):
            assert (await gate.check("deploy:staging", "api-v2", CONTEXT)).outcome == "ALLOW"
        took = []
        for _ in range(calls):
            started = time.perf_counter()
            await gate.check("deploy:staging", "api-v2", CONTEXT)
            took.append(time.perf_counter() - started)
        done = 0
        stop_at = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await gate.check("deploy:staging", "api-v2", CONTEXT)
                done += 1

        await asyncio.gather(*(caller() for _ in range(inflight)))
        return took, done / seconds


async def tokens(settings: Settings) -> dict[str, str]:
    admin = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo")
    try:
        found = dict((await admin.apply(demo_bundle())).tokens)
        found |= (await admin.apply(BUNDLE)).tokens
        await admin.set_shadow("shadow-bot", "strict-v1")
        return found
    finally:
        await admin.close()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    results: dict[str, list[tuple[float, float, float, float]]] = {mode: [] for mode in MODES}
    async with backend_stack("claiim-policy-") as settings:
        running = await start_services(settings, ("gate",), instance="measured")
        try:
            found = await tokens(settings)
            with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
                for _ in range(args.rounds):
                    for mode, agent in MODES.items():
                        cpu0 = time.process_time()
                        took, rate = await loop.run_in_executor(pool, load, settings.url, agent, found[agent],
                                                                args.inflight, args.seconds, args.calls)
                        cpu = time.process_time() - cpu0
                        n = args.calls + 20 + rate * args.seconds
                        results[mode].append((pct(took, 50), pct(took, 99), rate, cpu / n * 1e6))
        finally:
            await running.stop()
    med = {mode: tuple(statistics.median(r[i] for r in runs) for i in range(4)) for mode, runs in results.items()}
    p50_0, _, rate_0, cpu_0 = med["plain"]
    for mode, (p50, p99, rate, cpu) in med.items():
        print(f"{mode:<19} p50 {p50:5.2f} ms ({p50 / p50_0:.3f}x)  p99 {p99:5.2f} ms  {rate:>7,.0f} decisions/s "
              f"({rate / rate_0:.3f}x)  {cpu:4.0f} us gate CPU per decision ({cpu / cpu_0:.3f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inflight", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
