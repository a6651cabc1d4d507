"""``claiim up`` starts and stops as a terminal user expects: Ctrl-C (SIGINT to the whole process group) stops
it in order and leaves no server behind; after a SIGKILL, the next ``claiim up`` on the same data directory takes
over what was left; ``--nats-cluster 3`` runs the seed example and the rehearsal, and keeps answering when any
one of its nats-servers is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
from claiim import AsyncGate, CheckResult
from claiim_server.servers import free_port, port_free

from tests.e2e.upstack import SEED, Up, clean_env, servers_of

pytestmark = pytest.mark.e2e
STOP_S = 10
"""How long a stop of claiim up may take here: services 2 s, then nats-server and PostgreSQL."""


def wait_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    return alive


def test_ctrl_c_to_the_process_group_stops_everything_in_order(tmp_path: Path) -> None:
    """SIGINT to claiim up's whole process group (a terminal's Ctrl-C), three times: each time claiim up exits 0
    within a few seconds, says it stopped, and no nats-server or PostgreSQL of its data directory runs on."""
    data_dir = tmp_path / "stack"
    for _ in range(3):
        up = Up(data_dir, free_port())
        servers = servers_of(data_dir)
        assert {p.name() for p in servers} == {"nats-server", "postgres"}
        started = time.monotonic()
        os.killpg(up.process.pid, signal.SIGINT)
        try:
            code = up.process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            up.process.kill()
            raise AssertionError(f"claiim up did not stop within {STOP_S} s") from None
        took = time.monotonic() - started
        assert up.process.stdout is not None
        rest = up.process.stdout.read()
        assert code == 0 and "claiim stopping" in rest, rest
        left = wait_gone(servers, 1)
        assert not left, f"left running after {took:.1f} s: {left}"


@pytest.mark.parametrize("server", ["nats-server", "postgres"])
def test_a_server_that_dies_stops_claiim_up_with_a_reason(tmp_path: Path, server: str) -> None:
    """When its only nats-server or its PostgreSQL dies, claiim up says which and exits 1 (it does not retry for
    ever), and leaves nothing of its data directory running."""
    data_dir = tmp_path / "stack"
    up = Up(data_dir, free_port())
    servers = servers_of(data_dir)
    victim = min((p for p in servers if p.name() == server), key=lambda p: p.create_time())
    victim.send_signal(signal.SIGKILL)
    try:
        code = up.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        up.process.kill()
        raise
    assert up.process.stdout is not None
    said = up.process.stdout.read()
    assert code == 1, said
    name = "nats-server on port" if server == "nats-server" else "PostgreSQL (pid"
    assert name in said and "claiim up stops" in said, said
    assert not wait_gone(servers, 10)


def test_a_killed_claiim_up_is_taken_over_by_the_next(tmp_path: Path) -> None:
    """SIGKILL leaves claiim up's nats-server and PostgreSQL running (they are in sessions of their own); the next
    claiim up on the same data directory stops the old nats-server, takes PostgreSQL over, serves the same data,
    and when it stops, nothing of the directory runs any more."""
    data_dir = tmp_path / "stack"
    first = Up(data_dir, free_port())
    token = first.tokens["deploy-bot"]
    first.process.kill()
    first.process.wait(timeout=10)
    left = servers_of(data_dir)
    assert {p.name() for p in left} == {"nats-server", "postgres"}
    old_nats = next(p for p in left if p.name() == "nats-server")
    second = Up(data_dir, free_port())
    assert not old_nats.is_running() or old_nats.status() == psutil.STATUS_ZOMBIE
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from claiim import Gate
        print(Gate(agent_id="deploy-bot", token="{token}").check(action="deploy:staging").outcome)""")],
        capture_output=True, text=True, timeout=60, env={**clean_env(), "CLAIIM_URL": second.env["CLAIIM_URL"]})
    assert out.stdout.strip() == "ALLOW", out.stderr
    servers = servers_of(data_dir)
    assert second.stop() == 0
    assert not wait_gone(servers, 1)


def test_a_three_node_cluster_runs_the_seed_example_and_the_rehearsal(tmp_path: Path) -> None:
    """`claiim up --nats-cluster 3`: three nats-servers, every URL in DIR/env, streams with three replicas; the seed
    example answers ALLOW then DENY, the rehearsal passes, and `claiim chron verify` too."""
    port = three_free_ports()
    up = Up(tmp_path / "stack", port, "--nats-cluster", "3")
    try:
        assert up.env["CLAIIM_URL"] == ",".join(f"nats://127.0.0.1:{port + i}" for i in range(3))
        assert up.env["CLAIIM_STREAM_REPLICAS"] == "3"
        assert sum(p.name() == "nats-server" for p in servers_of(up.data_dir)) == 3
        seed = subprocess.run([sys.executable, "-c", textwrap.dedent(SEED).format(token=up.tokens["deploy-bot"])],
                              capture_output=True, text=True, timeout=60,
                              env={**clean_env(), "CLAIIM_URL": up.env["CLAIIM_URL"]})
        assert seed.returncode == 0, seed.stderr
        assert [line.split()[0] for line in seed.stdout.splitlines()] == ["ALLOW", "DENY"]
        rehearsal = up.cli("rehearsal", "--yes")
        assert rehearsal.returncode == 0 and "FAIL: 0" in rehearsal.stdout, rehearsal.stdout + rehearsal.stderr
        verify = up.cli("chron", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        assert up.stop() == 0


@pytest.mark.parametrize("node", [0, 1, 2])
def test_killing_any_nats_node_of_the_cluster_loses_nothing(tmp_path: Path, node: int) -> None:
    """Under load from four agents, SIGKILL of one of the three nats-servers of `claiim up --nats-cluster 3`: every
    check is answered (a DENY chron:unavailable while a stream elects a new leader, never an unrecorded ALLOW),
    recorded answers come again, and every recorded answer is in Chron exactly once."""
    port = three_free_ports()
    up = Up(tmp_path / "stack", port, "--nats-cluster", "3")
    try:
        nodes = sorted((p for p in servers_of(up.data_dir) if p.name() == "nats-server"),
                       key=lambda p: " ".join(p.cmdline()))
        assert len(nodes) == 3
        result = asyncio.run(_load_and_kill(up, nodes[node]))
        assert not result["errors"], result["errors"]
        assert result["unrecorded_allows"] == 0
        assert result["recorded_after_kill"] >= 20, result
        assert result["missing"] == [] and result["duplicates"] == [], result
    finally:
        assert up.stop() == 0


async def _load_and_kill(up: Up, victim: psutil.Process) -> dict[str, object]:
    gates = [AsyncGate(agent, up.tokens[agent], up.env["CLAIIM_URL"], timeout=10.0)
             for agent in ("deploy-bot", "review-bot") for _ in range(2)]
    replies: list[tuple[float, CheckResult]] = []
    errors: list[str] = []
    killed_at = 0.0
    started = time.monotonic()

    def recorded_after_kill() -> int:
        return sum(bool(killed_at and t > killed_at and r.chron_id) for t, r in replies)

    async def agent(gate: AsyncGate) -> None:
        action = "deploy:staging" if gate.agent_id == "deploy-bot" else "review:comment"
        while time.monotonic() - started < 30 and recorded_after_kill() < 40:
            try:
                replies.append((time.monotonic(), await gate.check(action=action, target="api-v2")))
            except Exception as e:  # any error is a failure, reported by the caller
                errors.append(repr(e))

    async def kill() -> None:
        nonlocal killed_at
        await asyncio.sleep(1.5)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()

    try:
        await asyncio.gather(kill(), *(agent(g) for g in gates))
    finally:
        for gate in gates:
            await gate.close()
    recorded = [r.chron_id for _, r in replies if r.chron_id]
    conn = await asyncpg.connect(up.env["CLAIIM_DATABASE_URL"])
    try:
        for _ in range(100):
            rows = await conn.fetch("SELECT chron_id, outcome FROM chron_events WHERE chron_id = ANY($1)", recorded)
            if len(rows) >= len(set(recorded)):
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    stored = {r["chron_id"]: r["outcome"] for r in rows}
    return {
        "errors": errors,
        "unrecorded_allows": sum(r.outcome == "ALLOW" and not r.chron_id for _, r in replies),
        "recorded_after_kill": recorded_after_kill(),
        "missing": [r.chron_id for _, r in replies if r.chron_id and stored.get(r.chron_id) != r.outcome],
        "duplicates": sorted({c for c in recorded if recorded.count(c) > 1}),
    }


def three_free_ports() -> int:
    """A port p with p, p+1 and p+2 free (claiim up's cluster takes the client ports from --nats-port up)."""
    while True:
        port = free_port()
        if port < 65_000 and all(port_free(port + i) for i in range(3)):
            return port
