"""What the gate's metrics and spans cost: the gate alone in this process, without them, with its metrics, and
with its metrics and OTLP spans, in one run.

Run: ``.venv/bin/python bench/metrics_cost.py [--inflight 128] [--seconds 3] [--rounds 3]``

It starts its own nats-server and PostgreSQL, runs control, Chron, the OCSF feed and the auth service as a
``claiim serve`` process, and the gate in this process, started afresh for each round, in turn:

- without metrics;
- with them (``CLAIIM_HTTP_PORT``: counters, histograms and the HTTP endpoint, scraped once a second during the
  round as Prometheus would, more often than it usually does);
- with them and a span per check exported over OTLP/HTTP (``CLAIIM_OTLP_ENDPOINT``) to a collector stand-in, a
  process of its own that accepts every export.

A spawned process drives it (``AsyncGate``, ``deploy-bot`` checking ``deploy:staging``, outside any span, so
every gate span is a root). Prints, per mode, the median decisions per second and the gate's CPU per decision
(this process's CPU time over the round, the span exporter's thread included), and their ratios to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.servers import free_port
from decision_path import async_load, demo_token
from gate_profile import backend_stack

COLLECTOR = """
import http.server, sys
class Accept(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Accept).serve_forever()
"""
Results = dict[str, list[tuple[float, float]]]


async def scrape(url: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.to_thread(lambda: urllib.request.urlopen(url + "/metrics", timeout=5).read())
        await asyncio.sleep(1.0)


async def measure(args: argparse.Namespace, settings: Settings, modes: dict[str, dict[str, Any]]) -> Results:
    loop = asyncio.get_running_loop()
    results: Results = {mode: [] for mode in modes}
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        token = None
        for _ in range(args.rounds):
            for mode, update in modes.items():
                running = await start_services(settings.model_copy(update=update), ("gate",), instance="measured")
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
    return results


async def main(args: argparse.Namespace, collector: str) -> None:
    modes: dict[str, dict[str, Any]] = {
        "without metrics": {"http_port": None}, "with metrics": {"http_port": 0},
        "metrics + spans": {"http_port": 0, "otlp_endpoint": collector}}
    async with backend_stack("claiim-metrics-") as settings:
        results = await measure(args, settings, modes)
    medians = {mode: (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
               for mode, runs in results.items()}
    r0, c0 = medians["without metrics"]
    for mode, (rate, cpu) in medians.items():
        print(f"{mode:<16} {rate:>9,.0f} decisions/s ({rate / r0:.3f}x)  {cpu:>6.0f} us of gate CPU per decision "
              f"({cpu / c0:.3f}x)  (rounds: {', '.join(f'{r:,.0f}' for r, _ in results[mode])})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inflight", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    port = free_port()
    collector = subprocess.Popen([sys.executable, "-c", COLLECTOR, str(port)])
    try:
        asyncio.run(main(parser.parse_args(sys.argv[1:]), f"http://127.0.0.1:{port}"))
    finally:
        collector.kill()
        collector.wait(10)
