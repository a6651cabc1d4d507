"""Bytes per decision in each store: the decision, control, proofs and OCSF streams and Chron's tables, with
JetStream's stream compression off and on (S2), in one run.

Run: ``.venv/bin/python bench/storage.py [--decisions 50000] [--inflight 128] [--compression both|none|s2]
[--packing none|zstd] [--archive [--segment 65536]]``

For each compression it starts its own nats-server and PostgreSQL, runs control, Chron, the OCSF feed and the
auth service as a ``claiim serve`` process and the gate in this process, sends ``--decisions`` checks of the demo
agents (three of four ALLOW, as the fault suite mixes them; a context of two entries, as a deploy bot sends)
from a spawned process, waits until Chron has stored and checkpointed them all, and reads what each store
holds: the streams' message bytes from JetStream (``<stream>``: before compression, as ``chron status``
reports them) and their files in the nats-server's store directory (``<stream> files``: on disk), and the
tables' bytes from PostgreSQL (``pg_total_relation_size``: heap, indexes and TOAST), less what they held
before the load. PostgreSQL's WAL is not counted in the total (it is recycled), but what was written to it
is shown (``WAL written``). Prints bytes per decision per store, the total on disk (files and tables), and
the ratio of S2 to none. With ``--archive``, Chron archives every sealed segment to a
folder (``archive files``, counted in the total) and trims the decision stream of it at once
(``CLAIIM_DECISIONS_KEEP=0``).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import asyncpg
from claiim import AsyncAdmin, AsyncGate
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.stack import demo_bundle
from gate_profile import backend_stack

CHECKS = (("deploy-bot", "deploy:staging"), ("deploy-bot", "health:check"), ("review-bot", "pr:comment"),
          ("deploy-bot", "deploy:production"))
CONTEXT = {"ticket": "CHG-4711", "pipeline": "api-v2/main#1234"}


def load(url: str, tokens: dict[str, str], decisions: int, inflight: int) -> float:
    """Send ``decisions`` checks with ``inflight`` in flight; the decisions per second."""
    return asyncio.run(_load(url, tokens, decisions, inflight))


async def _load(url: str, tokens: dict[str, str], decisions: int, inflight: int) -> float:
    gates = {agent: AsyncGate(agent, tokens[agent], url, timeout=30) for agent, _ in CHECKS}
    sent = 0
    started = time.perf_counter()

    async def caller() -> None:
        nonlocal sent
        while sent < decisions:
            agent, action = CHECKS[sent % len(CHECKS)]
            sent += 1
            await gates[agent].check(action, "api-v2", CONTEXT)

    try:
        await asyncio.gather(*(caller() for _ in range(inflight)))
    finally:
        for gate in gates.values():
            await gate.close()
    return decisions / (time.perf_counter() - started)


async def sizes(admin: AsyncAdmin, settings: Settings, compression: str, archive: Path | None) -> dict[str, int]:
    """What ``chron status`` reports (streams' message bytes before compression, tables' bytes on disk), each
    stream's files on disk (``<stream> files``), from the nats-server's store directory, the archive's, and
    PostgreSQL's WAL position (``WAL written``: its growth is what PostgreSQL wrote to its log)."""
    found = dict((await admin.chron_status()).disk)
    for stream in [name for name in found if not name.startswith("table:")]:
        found[f"{stream} files"] = await asyncio.to_thread(files_size, compression, stream)
    conn = await asyncpg.connect(settings.database_url)
    try:
        found["WAL written"] = int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    finally:
        await conn.close()
    if archive is not None:
        found["archive files"] = await asyncio.to_thread(folder_size, archive)
    return found


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def files_size(compression: str, stream: str) -> int:
    files = glob.glob(f"{tempfile.gettempdir()}/claiim-storage-{compression}-*/nats/**/streams/{stream}/**",
                      recursive=True)
    return sum(os.path.getsize(f) for f in files if os.path.isfile(f))


async def measure(compression: str, args: argparse.Namespace) -> tuple[dict[str, float], float]:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="claiim-archive-") as folder:
        archive = Path(folder) if args.archive else None
        update: dict[str, object] = {"stream_compression": compression, "chron_packing": args.packing}
        if archive is not None:  # archive every sealed segment, and trim the decision stream of it at once
            update |= {"archive": str(archive), "archive_segment": args.segment, "decisions_keep": 0.0}
        async with backend_stack(f"claiim-storage-{compression}-", **update) as settings:
            running = await start_services(settings, ("gate",), instance="measured")
            admin = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo")
            try:
                tokens = dict((await admin.apply(demo_bundle())).tokens)
                before = await settled(admin, settings, 0, compression, archive)
                with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
                    rate = await loop.run_in_executor(pool, load, settings.url, tokens, args.decisions,
                                                      args.inflight)
                after = await settled(admin, settings, before["tree"] + args.decisions, compression, archive)
            finally:
                await admin.close()
                await running.stop()
    per = {name: (after[name] - before.get(name, 0)) / args.decisions for name in after if name != "tree"}
    return per, rate


async def settled(admin: AsyncAdmin, settings: Settings, leaves: int, compression: str,
                  archive: Path | None) -> dict[str, int]:
    """The stores' sizes once Chron holds ``leaves`` leaves, all checkpointed and nothing pending (and, with an
    archive, every whole segment archived)."""
    deadline = time.monotonic() + 600
    while True:
        status = await admin.chron_status()
        whole = status.tree_size // settings.archive_segment * settings.archive_segment if archive else 0
        if (status.tree_size >= leaves and status.checkpoint_size == status.tree_size and status.pending == 0
                and status.tree_size > 0 and status.archived == whole):
            await asyncio.sleep(2 * settings.checkpoint_interval)  # the OCSF feed, proofs stream and trim catch up
            return {**await sizes(admin, settings, compression, archive), "tree": status.tree_size}
        if time.monotonic() > deadline:
            raise TimeoutError(f"Chron did not settle: {status}")
        await asyncio.sleep(0.5)


async def main(args: argparse.Namespace) -> None:
    compressions = ("none", "s2") if args.compression == "both" else (args.compression,)
    results = {c: await measure(c, args) for c in compressions}
    if len(results) == 1:
        [(compression, (per, rate))] = results.items()
        print(f"{args.decisions:,} decisions, compression {compression}; bytes per decision (one copy of each "
              "stream; WAL not counted)")
        on_disk = [n for n in per if n.startswith("table:") or n.endswith(" files")]
        for name in sorted(per):
            print(f"{name:<34} {per[name]:10,.0f}")
        print(f"{'total on disk':<34} {sum(per[n] for n in on_disk):10,.0f}")
        print(f"load: {rate:,.0f} decisions/s")
        return
    names = sorted(results["none"][0])
    print(f"{args.decisions:,} decisions; bytes per decision (one copy of each stream; WAL not counted)")
    print(f"{'store':<34} {'none':>10} {'s2':>10} {'s2/none':>8}")
    on_disk = [n for n in names if n.startswith("table:") or n.endswith(" files")]
    for name in [*names, "total on disk"]:
        none = sum(results["none"][0][n] for n in on_disk) if name.startswith("total") else results["none"][0][name]
        s2 = sum(results["s2"][0][n] for n in on_disk) if name.startswith("total") else results["s2"][0][name]
        print(f"{name:<34} {none:10,.0f} {s2:10,.0f} {s2 / none if none else 0:8.2f}")
    print(f"load: {results['none'][1]:,.0f} decisions/s (none), {results['s2'][1]:,.0f} (s2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--inflight", type=int, default=128)
    parser.add_argument("--compression", choices=["both", "none", "s2"], default="both",
                        help="the streams' compression to measure (default: both, side by side)")
    parser.add_argument("--archive", action="store_true",
                        help="archive to a folder and trim the decision stream of what is archived at once")
    parser.add_argument("--packing", choices=["none", "zstd"], default="none",
                        help="how Chron stores the events (CLAIIM_CHRON_PACKING)")
    parser.add_argument("--segment", type=int, default=65_536, help="leaves per archive segment (with --archive)")
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
