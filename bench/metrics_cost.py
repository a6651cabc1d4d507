"""What the gate's metrics cost: the gate alone in this process, with and without its metrics, in one run.

Run: ``.venv/bin/python bench/metrics_cost.py [--inflight 128] [--seconds 3] [--rounds 3]``

It starts its own nats-server and PostgreSQL, runs control, Chron, the OCSF feed and the auth service as a
``claiim serve`` process, and the gate in this process, started afresh for each round, alternately without
metrics and with them (``CLAIIM_HTTP_PORT``: counters, histograms and the HTTP endpoint, scraped once a
second during the round as Prometheus would, more often than it usually does). A spawned process drives it
(``AsyncGate``, ``deploy-bot`` checking ``deploy:staging``). Prints, per mode, the median decisions per second
and the gate's CPU per decision (this process's CPU time over the round), and their ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor

from claiim_server.bootstrap import start_services
from decision_path import async_load, demo_token
from gate_profile import backend_stack


async def scrape(url: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.to_thread(lambda: urllib.request.urlopen(url + "/metrics", timeout=5).read())
        await asyncio.sleep(1.0)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    results: dict[str, list[tuple[float, float]]] = {"without metrics": [], "with metrics": []}
    async with backend_stack("claiim-metrics-") as settings:
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
            token = None
            for _ in range(args.rounds):
                for mode, port in (("without metrics", None), ("with metrics", 0)):
                    running = await start_services(settings.model_copy(update={"http_port": port}), ("gate",),
                                                   instance="measured")
                    stop = asyncio.Event()
                    scraper = asyncio.create_task(scrape(running.http.url, stop)) if running.http else None
                    try:
                        token = token or await demo_token(settings)
                        await loop.run_in_executor(pool, async_load, settings.url, token, args.inflight, 1.0, 0.5)
                        cpu0 = time.process_time()
                        calls = await loop.run_in_executor(pool, async_load, settings.url, token, args.inflight,
                                                           args.seconds, 0.0)
                        cpu = time.process_time() - cpu0
                    finally:
                        stop.set()
                        if scraper is not None:
                            await scraper
                        await running.stop()
                    results[mode].append((calls.rate, cpu * 1e6 / max(len(calls.lat), 1)))
    medians = {mode: (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
               for mode, runs in results.items()}
    for mode, (rate, cpu) in medians.items():
        print(f"{mode:<16} {rate:>9,.0f} decisions/s  {cpu:>6.0f} us of gate CPU per decision  "
              f"(rounds: {', '.join(f'{r:,.0f}' for r, _ in results[mode])})")
    (r0, c0), (r1, c1) = medians["without metrics"], medians["with metrics"]
    print(f"with / without: throughput {r1 / r0:.3f}, CPU per decision {c1 / c0:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inflight", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
