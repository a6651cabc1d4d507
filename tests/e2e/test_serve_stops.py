"""`claiim serve` processes exit 0 within 2 s of SIGTERM while NATS goes away at the same moment (the OCSF
feed used to wait in its fetch for ever, Chron to exit 1 when its last checkpoint could not be published)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from claiim_core.names import Names
from claiim_server.servers import NatsCredentials, NatsProcess, ensure_database, free_port, start_nats
from claiim_server.workers import serve_env

from tests.conftest import needs_nats_auth, new_settings

pytestmark = [pytest.mark.e2e, needs_nats_auth]
CLAIIM = str(Path(sys.executable).parent / "claiim")
SERVICES = ("chron", "ocsf", "gate", "control")
STOP_S = 2.0


def serve(service: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([CLAIIM, "--env-file", os.devnull, "serve", service], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_serving(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 45
    while b"claiim serving" not in log.read_bytes():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@pytest.fixture
async def served(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[NatsProcess, dict[str, str]]]:
    """A nats-server of this test's own, and the environment of `claiim serve` processes on it."""
    namespace = f"s{secrets.token_hex(4)}"
    credentials = NatsCredentials.generate()
    server = start_nats(free_port(), tmp_path / "nats", credentials=credentials, names=Names(namespace))
    try:
        settings = new_settings(server.url, await ensure_database(pg_url, f"t_{secrets.token_hex(6)}"), namespace,
                                credentials)
        yield server, serve_env(settings)
    finally:
        server.stop()


@pytest.mark.parametrize("round_", range(3))
async def test_every_service_exits_0_within_2_s_of_sigterm_as_nats_goes_away(
        served: tuple[NatsProcess, dict[str, str]], tmp_path: Path, round_: int) -> None:
    """Chron, the OCSF feed, the gate and control as separate processes; their nats-server is killed and each gets
    SIGTERM at the same moment: each exits 0 within 2 s (+0.5 s for the process itself)."""
    server, env = served
    logs = {s: tmp_path / f"{s}.log" for s in SERVICES}
    processes = {s: serve(s, env, logs[s]) for s in SERVICES}
    try:
        for s, process in processes.items():
            wait_serving(process, logs[s])
        server.process.send_signal(signal.SIGKILL)
        started = time.monotonic()
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        results = {}
        for s, process in processes.items():
            try:
                code = process.wait(timeout=max(0.1, started + STOP_S + 5 - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = None
            results[s] = (code, round(time.monotonic() - started, 2))
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    slow = {s: r for s, r in results.items() if r[0] != 0 or r[1] > STOP_S + 0.5}
    assert not slow, (slow, {s: logs[s].read_text()[-1500:] for s in slow})


def keep_signalling(process: subprocess.Popen[bytes], seconds: float) -> int | None:
    """SIGTERM every 2 ms until ``process`` exits (or ``seconds`` pass); its exit code."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        process.send_signal(signal.SIGTERM)
        time.sleep(0.002)
    return process.wait(timeout=1)


async def test_a_repeated_sigterm_does_not_turn_a_clean_stop_into_death_by_signal(
        served: tuple[NatsProcess, dict[str, str]], tmp_path: Path) -> None:
    """A supervisor that repeats its SIGTERM while a service stops (every 2 ms until it has exited): exit 0."""
    _, env = served
    log = tmp_path / "gate.log"
    process = serve("gate", env, log)
    try:
        wait_serving(process, log)
        assert keep_signalling(process, STOP_S + 5) == 0, log.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
