"""`claiim serve gate --workers N`: N gate processes share the queue group, a worker that dies is started again,
and none outlives its supervisor, stopped or killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import psutil
import pytest
from claiim import AsyncAdmin, AsyncGate
from claiim_chron.verify import read_subject
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.stack import demo_bundle
from claiim_server.workers import serve_env

from tests.conftest import connect_as, needs_nats_auth, with_auth

pytestmark = [pytest.mark.e2e, needs_nats_auth]
CLAIIM = str(Path(sys.executable).parent / "claiim")
WORKERS = 2


class _Gate(msgspec.Struct):
    gate: str


@pytest.fixture
async def tokens(stack_settings: Settings) -> AsyncIterator[dict[str, str]]:
    """Control, Chron and the auth service in this process, the demo bundle applied; no gate."""
    running = await start_services(stack_settings, with_auth(stack_settings, "control", "chron"), instance="test")
    admin = AsyncAdmin(stack_settings.url, stack_settings.require_admin_token(), org="demo",
                       namespace=stack_settings.namespace)
    try:
        yield dict((await admin.apply(demo_bundle())).tokens)
    finally:
        await admin.close()
        await running.stop()


@pytest.fixture
def supervisor(stack_settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / "gate.log"
    env = serve_env(stack_settings)
    with log.open("wb") as out:
        process = subprocess.Popen([CLAIIM, "--env-file", os.devnull, "serve", "gate", "--workers", str(WORKERS)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"claiim serving gate" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process, log
    finally:
        for child in psutil.Process(process.pid).children() if process.poll() is None else []:
            child.kill()
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def workers(process: subprocess.Popen[bytes]) -> list[int]:
    return [c.pid for c in psutil.Process(process.pid).children()]


def gone(pids: list[int], within: float) -> list[int]:
    """The pids of ``pids`` still running after ``within`` seconds."""
    deadline = time.monotonic() + within
    while (alive := [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


async def allowed(settings: Settings, token: str, n: int) -> int:
    async with AsyncGate("deploy-bot", token, settings.url, namespace=settings.namespace, timeout=10) as gate:
        replies = await asyncio.gather(*(gate.check(action="deploy:staging", target=f"api-{i}") for i in range(n)))
    return sum(r.outcome == "ALLOW" for r in replies)


async def test_workers_share_the_load_and_one_that_dies_is_started_again(
        stack_settings: Settings, tokens: dict[str, str],
        supervisor: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, log = supervisor
    first = workers(process)
    assert len(first) == WORKERS
    assert await allowed(stack_settings, tokens["deploy-bot"], 400) == 400
    nc = await connect_as(stack_settings)
    try:
        names = stack_settings.names
        deciders = {msgspec.json.decode(m.data, type=_Gate).gate
                    async for m in read_subject(nc.jetstream(), names.decisions_stream, names.decisions_wildcard)}
    finally:
        await nc.close()
    assert len(deciders) == WORKERS, deciders

    os.kill(first[0], signal.SIGKILL)
    assert await allowed(stack_settings, tokens["deploy-bot"], 100) == 100  # the other worker answers meanwhile
    deadline = time.monotonic() + 30
    while len(now := workers(process)) < WORKERS or first[0] in now:
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        await asyncio.sleep(0.1)
    assert b"starting it again" in log.read_bytes()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0, log.read_text()[-3000:]
    assert not gone(now, 1.0)


async def test_no_worker_outlives_a_killed_supervisor(tokens: dict[str, str],
                                                      supervisor: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, log = supervisor
    pids = workers(process)
    assert len(pids) == WORKERS
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=5)
    assert not gone(pids, 5.0), log.read_text()[-3000:]
