"""A claiim deployment of separate processes, as an operator runs one: nats-server (one, or a cluster of
three), PostgreSQL, and ``claiim serve`` processes (two gates, control with the auth service, the OCSF feed,
Chron and optionally its standby), each of which a fault scenario may kill, stop or start again.

Every wait is bounded; every process signalled is one this module started (by its PID).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats
from claiim import AsyncAdmin
from claiim_chron.eventcodec import unpack
from claiim_core.names import Names, service_inbox
from claiim_core.urls import nats_servers
from claiim_runtime.natsconf import MAINTENANCE_USER, Cluster
from claiim_runtime.settings import Settings
from claiim_server.servers import NatsCredentials, NatsProcess, ensure_database, free_port, new_password, start_nats
from claiim_server.stack import demo_bundle
from claiim_server.workers import serve_env
from nats.aio.client import Client

from tests.conftest import new_settings
from tests.pgproc import OwnPostgres

CLAIIM = str(Path(sys.executable).parent / "claiim")
READY_S = 45.0
"""How long a `claiim serve` process may take to say it serves (imports, NATS, PostgreSQL)."""
SERVICES = {"gate-1": ("gate",), "gate-2": ("gate",), "control": ("control", "auth"), "ocsf": ("ocsf",),
            "chron-1": ("chron",)}
"""The processes of a deployment and what each serves (a standby, ``chron-2``, is started on demand)."""
STANDING_BY = b"standing by until it is free"
"""What a Chron standby says while it waits on the writer lock."""


@dataclass
class NatsNode:
    port: int
    store: Path
    cluster: Cluster | None
    name: str
    process: NatsProcess | None = None


@dataclass
class Deployment:
    root: Path
    settings: Settings
    credentials: NatsCredentials
    nodes: list[NatsNode]
    pg: OwnPostgres
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    # -- starting ------------------------------------------------------------------------------

    @classmethod
    async def start(cls, root: Path, nats_nodes: int = 1, standby: bool = False) -> Deployment:
        namespace = f"f{secrets.token_hex(4)}"
        generated = NatsCredentials.generate()
        credentials = NatsCredentials({**generated.passwords, MAINTENANCE_USER: new_password()},
                                      generated.issuer_seed)
        if nats_nodes == 1:
            nodes = [NatsNode(free_port(), root / "nats", None, "n1")]
        else:
            routes = tuple(f"127.0.0.1:{free_port()}" for _ in range(nats_nodes))
            password = new_password()
            nodes = [NatsNode(free_port(), root / f"nats-{i}",
                              Cluster(routes, port=int(route.rsplit(":", 1)[1]), password=password), f"n{i}")
                     for i, route in enumerate(routes, 1)]
        pg = await asyncio.to_thread(OwnPostgres, root / "pg")
        deployment = None
        try:
            db = await ensure_database(pg.url, "claiim")
            url = ",".join(f"nats://127.0.0.1:{n.port}" for n in nodes)
            settings = new_settings(url, db, namespace, credentials)
            verifier = str(settings.require_checkpoint_signer().verifier)
            settings = settings.model_copy(update={"stream_replicas": nats_nodes, "checkpoint_verifier": verifier,
                                                   "connect_wait": 20.0})
            deployment = cls(root, settings, credentials, nodes, pg)
            for i in range(len(nodes)):
                await asyncio.to_thread(deployment.start_nats, i)
            await asyncio.gather(*(deployment.start_service(name) for name in SERVICES))
            if standby:
                await deployment.start_service("chron-2", STANDING_BY)
            deployment.tokens = await deployment.load_demo()
        except BaseException:
            if deployment is not None:
                deployment.stop_all(force=True)
            pg.close()
            raise
        return deployment

    def start_nats(self, index: int) -> None:
        node = self.nodes[index]
        node.process = start_nats(node.port, node.store, credentials=self.credentials,
                                  names=Names(self.settings.namespace), cluster=node.cluster, server_name=node.name)

    async def start_service(self, name: str, ready: bytes = b"claiim serving") -> None:
        """Start `claiim serve` for ``name`` and wait until its log says ``ready``."""
        process, log, offset = self._spawn(name)
        deadline = time.monotonic() + READY_S
        while not self._says(log, offset, ready):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{name} did not start (exit {process.poll()}): {self.log(name)[-3000:]}")
            await asyncio.sleep(0.1)

    def _spawn(self, name: str) -> tuple[subprocess.Popen[bytes], Path, int]:
        which = SERVICES.get(name) or (("chron",) if name.startswith("chron") else (name,))
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        offset = log.stat().st_size if log.exists() else 0
        env = serve_env(self.settings)
        with log.open("ab") as out:
            process = subprocess.Popen([CLAIIM, "--env-file", os.devnull, "serve", *which],
                                       env=env, stdout=out, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process, log, offset

    @staticmethod
    def _says(log: Path, offset: int, text: bytes) -> bool:
        with log.open("rb") as f:
            f.seek(offset)
            return text in f.read()

    def log(self, name: str) -> str:
        return (self.root / "logs" / f"{name}.log").read_text(errors="replace")

    async def load_demo(self) -> dict[str, str]:
        admin = AsyncAdmin(self.settings.url, self.settings.require_admin_token(), org="demo",
                           namespace=self.settings.namespace)
        try:
            return dict((await admin.apply(demo_bundle())).tokens)
        finally:
            await admin.close()

    # -- faults --------------------------------------------------------------------------------

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.processes[name].send_signal(sig)

    def stop_service(self, name: str, seconds: float) -> tuple[int | None, float]:
        """SIGTERM to ``name``; its exit code (None: still running after ``seconds``, then killed) and
        how long it took."""
        process = self.processes[name]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code: int | None = process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            code = None
        return code, time.monotonic() - started

    def kill_nats(self, index: int) -> None:
        node = self.nodes[index].process
        assert node is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

    def stop_all(self, force: bool = False) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL if force else signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for node in self.nodes:
            if node.process is not None:
                node.process.stop()
        self.pg.close()

    # -- looking -------------------------------------------------------------------------------

    async def connect(self) -> Client:
        """A NATS connection as the maintenance user (stream drills, consumer state)."""
        user = MAINTENANCE_USER
        return await asyncio.wait_for(nats.connect(
            nats_servers(self.settings.url), user=user, password=self.credentials.passwords[user],
            inbox_prefix=service_inbox(user), max_reconnect_attempts=-1, reconnect_time_wait=0.2,
            allow_reconnect=True), 10)

    async def rows(self) -> list[dict[str, Any]]:
        """Chron's decision rows: chron id, outcome, request id (from the stored event), leaf index."""
        conn = await asyncpg.connect(self.settings.require_database_url(), timeout=5)
        try:
            rows = await conn.fetch("SELECT chron_id, outcome, event, leaf_index FROM chron_events "
                                    "WHERE kind = 'decision'")
        finally:
            await conn.close()
        return [{"chron_id": r["chron_id"], "outcome": r["outcome"], "leaf_index": r["leaf_index"],
                 "request_id": json.loads(unpack(bytes(r["event"])))["request_id"]} for r in rows]

    async def leaves_dense(self) -> bool:
        conn = await asyncpg.connect(self.settings.require_database_url(), timeout=5)
        try:
            count, low, high = await conn.fetchrow(
                "SELECT count(*), min(leaf_index), max(leaf_index) FROM chron_events")
        finally:
            await conn.close()
        return bool(count == 0 or (low == 0 and high == count - 1))

    def verify(self) -> subprocess.CompletedProcess[str]:
        """`claiim chron verify` against this deployment."""
        env = serve_env(self.settings)
        return subprocess.run([CLAIIM, "--env-file", os.devnull, "chron", "verify"], env=env,
                              capture_output=True, text=True, timeout=120)
