"""NATS as a cluster: deploy/nats/nats-cluster.conf as compose runs it (three nodes, routes that log in),
streams with three replicas, a gate that keeps answering when a node dies, and replicas checked at start."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from claiim import AsyncAdmin, AsyncGate
from claiim_auth.nkeys import KeyPair
from claiim_runtime.natsconf import CLUSTER_PASSWORD_VARIABLE, password_variable
from claiim_runtime.settings import Settings
from claiim_runtime.streams import StreamReplicasError
from claiim_server.bootstrap import start_services
from claiim_server.servers import NatsCredentials, ensure_database, free_port, nats_server_binary
from claiim_server.stack import demo_bundle

from tests.conftest import connect_as, needs_nats_auth, new_settings

pytestmark = [pytest.mark.integration, needs_nats_auth]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    port: int
    log: Path


@dataclass
class Cluster:
    nodes: list[Node]
    credentials: NatsCredentials
    route_password: str

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{n.port}" for n in self.nodes)


def wait_listening(node: Node) -> None:
    deadline = time.monotonic() + 10
    while True:
        if node.process.poll() is not None:
            pytest.fail(f"nats-server exited with {node.process.returncode}: {node.log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", node.port), timeout=0.1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"nats-server did not listen on {node.port} within 10 s: {node.log.read_text()}")
            time.sleep(0.05)


@pytest.fixture
def deployed_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nats-servers with deploy/nats/nats-cluster.conf itself and the environment compose gives each node
    (only ports and store dirs changed: the nodes share 127.0.0.1 here)."""
    text = (ROOT / "deploy/nats/nats-cluster.conf").read_text()
    credentials = NatsCredentials.generate()
    route_password = "p" + secrets.token_hex(16)
    routes = [free_port() for _ in range(3)]
    base = {**os.environ, "NATS_ISSUER": KeyPair.from_seed(credentials.issuer_seed).public_key,
            CLUSTER_PASSWORD_VARIABLE: route_password,
            **{password_variable(u): p for u, p in credentials.passwords.items()},
            **{f"NATS_ROUTE_{i}": f"nats-route://route:{route_password}@127.0.0.1:{port}"
               for i, port in enumerate(routes, 1)}}
    nodes: list[Node] = []
    try:
        for i, route in enumerate(routes, 1):
            port = free_port()
            conf = (text.replace("port: 4222", f"port: {port}").replace("http_port: 8222", f"http_port: {free_port()}")
                    .replace("port: 6222", f"port: {route}").replace('host: "0.0.0.0"', 'host: "127.0.0.1"')
                    .replace('store_dir: "/data"', f'store_dir: "{tmp_path / f"js{i}"}"'))
            (tmp_path / f"n{i}.conf").write_text(conf)
            log = tmp_path / f"n{i}.log"
            with log.open("wb") as out:
                process = subprocess.Popen([nats_server_binary(), "-c", str(tmp_path / f"n{i}.conf")],
                                           env={**base, "NATS_SERVER_NAME": f"nats-{i}"}, stdout=out,
                                           stderr=subprocess.STDOUT)
            nodes.append(Node(process, port, log))
        for node in nodes:
            wait_listening(node)
        yield Cluster(nodes, credentials, route_password)
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.process.terminate()
        for node in nodes:
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.process.kill()


async def cluster_settings(cluster: Cluster, pg_url: str, replicas: int = 3) -> Settings:
    db = await ensure_database(pg_url, f"t_{secrets.token_hex(6)}")
    settings = new_settings(cluster.url, db, "claiim", cluster.credentials)
    return settings.model_copy(update={"stream_replicas": replicas})


async def test_the_deployed_cluster_keeps_answering_and_recording_when_a_node_dies(
        pg_url: str, deployed_cluster: Cluster) -> None:
    """Services on the three-node cluster create streams with three replicas. SIGKILL of the decisions stream's
    leader (the worst node to lose): every check is still answered within the SDK's deadline, never with an ALLOW
    that is not recorded (while the other two elect a leader the answer is DENY chron:unavailable), recorded
    answers come again within 15 s, and every recorded answer is in Chron once."""
    settings = await cluster_settings(deployed_cluster, pg_url)
    running = await start_services(settings, instance="cluster")
    try:
        nc = await connect_as(settings, "gate")
        info = await nc.jetstream().stream_info(settings.names.decisions_stream)
        await nc.close()
        assert info.config.num_replicas == 3 and info.cluster is not None and info.cluster.leader
        assert len(info.cluster.replicas or []) == 2, "a leader and two followers"
        victim = deployed_cluster.nodes[int(info.cluster.leader.rsplit("-", 1)[1]) - 1]
        admin = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo", namespace="claiim")
        tokens = (await admin.apply(demo_bundle())).tokens
        await admin.close()
        replies, errors, recorded_at = [], [], []
        async with AsyncGate("deploy-bot", tokens["deploy-bot"], settings.url, timeout=5.0) as gate:
            started = time.monotonic()
            killed_at = 0.0
            while not killed_at or sum(t > killed_at for t in recorded_at) < 20:
                assert time.monotonic() - started < 30, "no recorded answers after the kill"
                if not killed_at and time.monotonic() - started > 1:
                    victim.process.send_signal(signal.SIGKILL)
                    killed_at = time.monotonic()
                try:
                    reply = await gate.check(action="deploy:staging", target="api-v2")
                except Exception as e:  # any error is a failure, listed below
                    errors.append(e)
                    continue
                replies.append(reply)
                if reply.chron_id:
                    recorded_at.append(time.monotonic())
        assert killed_at and not errors, errors
        assert all((r.outcome, bool(r.chron_id)) in {("ALLOW", True), ("DENY", False)} for r in replies)
        assert all(r.reason.startswith("chron:unavailable") for r in replies if not r.chron_id)
        pause = max(b - a for a, b in itertools.pairwise(recorded_at))
        assert recorded_at[-1] > killed_at and pause < 15, f"no recorded answer for {pause:.2f} s"
        assert running.chron is not None
        ids = [r.chron_id for r in replies if r.chron_id]
        for _ in range(200):
            stored = [r["chron_id"] for r in await running.chron.store.query(kind="decision", limit=100_000)]
            if set(ids) <= set(stored):
                break
            await asyncio.sleep(0.05)
        assert set(ids) <= set(stored) and len(set(stored)) == len(stored) and len(set(ids)) == len(ids)
    finally:
        await running.stop()


async def test_a_node_without_the_route_password_cannot_join(tmp_path: Path, deployed_cluster: Cluster) -> None:
    """A nats-server that routes to the cluster without the route password is refused: nobody else joins."""
    text = (tmp_path / "n1.conf").read_text()
    listen = text.split("cluster {", 1)[1].split("port: ", 1)[1].split("\n", 1)[0]
    log = tmp_path / "intruder.log"
    intruder = await asyncio.create_subprocess_exec(
        nats_server_binary(), "-p", str(free_port()), "-a", "127.0.0.1", "--cluster_name", "claiim", "--cluster",
        f"nats://127.0.0.1:{free_port()}", "--routes", f"nats-route://route:wrong@127.0.0.1:{listen}", "-l", str(log))
    try:
        deadline = time.monotonic() + 10
        while "Authorization Violation" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            await asyncio.sleep(0.1)
        assert "authentication error" in deployed_cluster.nodes[0].log.read_text()
    finally:
        intruder.terminate()
        await asyncio.wait_for(intruder.wait(), 10)


async def test_stream_replicas_are_checked_at_start(pg_url: str, deployed_cluster: Cluster,
                                                    stack_settings: Settings) -> None:
    """Streams that exist with three replicas make a service asking for one refuse to start and say what to set;
    three replicas on a single server are refused as well."""
    settings = await cluster_settings(deployed_cluster, pg_url)
    running = await start_services(settings, which=("gate",), instance="r3")
    await running.stop()
    with pytest.raises(StreamReplicasError, match=r"exists with 3 replica\(s\) but CLAIIM_STREAM_REPLICAS asks for "
                                                  r"1: set CLAIIM_STREAM_REPLICAS=3"):
        await start_services(settings.model_copy(update={"stream_replicas": 1}), which=("gate",), instance="r1")
    with pytest.raises(StreamReplicasError, match="not a cluster of 3 or more nodes"):
        await start_services(stack_settings.model_copy(update={"stream_replicas": 3}), which=("gate",),
                             instance="single")
