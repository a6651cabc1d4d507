"""Where the gate's CPU goes: the gate alone in this process under cProfile, everything else elsewhere.

Run: ``.venv/bin/python bench/gate_profile.py [--inflight 128] [--duration 5] [--top 10]``

It starts its own nats-server and PostgreSQL, runs control, Chron, the OCSF feed and the auth service
as a ``claiim serve`` process, the gate in this process, and drives it from a spawned process
(``AsyncGate``, ``deploy-bot`` checking ``deploy:staging``, ``--inflight`` checks in flight). Only the
measured phase is profiled. Prints decisions/s, the gate's CPU per decision (this process's CPU time
over the phase, the profiler's overhead included, so compare runs of this script with each other),
and the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import stack
from claiim_core.names import Names
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.servers import ensure_database, free_port, start_nats, start_postgres
from claiim_server.workers import serve_env
from decision_path import async_load, demo_token

CLAIIM = str(Path(sys.executable).parent / "claiim")


def serve_backend(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Control, Chron, the OCSF feed and the auth service in a process of their own."""
    with log.open("wb") as out:
        return subprocess.Popen([CLAIIM, "--env-file", os.devnull, "serve", "control", "chron", "ocsf", "auth"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


@asynccontextmanager
async def backend_stack(prefix: str, **update: object) -> AsyncIterator[Settings]:
    """nats-server and PostgreSQL of their own, and control, Chron, the OCSF feed and the auth service in a
    ``claiim serve`` process: the settings for a gate in this process (with ``update`` applied)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        credentials = stack.credentials()
        nats_server = start_nats(free_port(), Path(tmp) / "nats", credentials=credentials, names=Names())
        pg, server_url = await asyncio.to_thread(start_postgres, Path(tmp) / "pg")
        backend: subprocess.Popen[bytes] | None = None
        try:
            settings = stack.settings(nats_server.url, await ensure_database(server_url, "claiim_bench"),
                                      credentials).model_copy(update=update)
            log = Path(tmp) / "backend.log"
            backend = serve_backend(serve_env(settings), log)
            deadline = time.monotonic() + 60
            while b"claiim serving" not in log.read_bytes():
                if backend.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text())
                await asyncio.sleep(0.1)
            yield settings
        finally:
            if backend is not None:
                backend.terminate()
                backend.wait(timeout=10)
            nats_server.stop()
            await asyncio.to_thread(pg.cleanup)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    async with backend_stack("claiim-profile-") as settings:
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
            running = await start_services(settings, ("gate",), instance="profiled")
            try:
                token = await demo_token(settings)
                # warm up (off the profile), then the measured phase
                await loop.run_in_executor(pool, async_load, settings.url, token, args.inflight, 1.0, 0.5)
                profile = cProfile.Profile()
                cpu0 = time.process_time()
                profile.enable()
                calls = await loop.run_in_executor(pool, async_load, settings.url, token, args.inflight,
                                                   args.duration, 0.0)
                profile.disable()
                cpu = time.process_time() - cpu0
            finally:
                await running.stop()
    n = len(calls.lat)
    print(f"{n:,} decisions in {calls.seconds:.1f} s: {calls.rate:,.0f}/s, {calls.errors + calls.not_allowed} "
          f"errors or non-ALLOW; gate CPU {cpu * 1e6 / max(n, 1):.0f} us per decision (profiled)")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inflight", type=int, default=128)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--top", type=int, default=10)
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
