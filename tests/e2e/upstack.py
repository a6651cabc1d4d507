"""``claiim up`` as a subprocess, for the end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from claiim_server.servers import free_port

CLAIIM = str(Path(sys.executable).parent / "claiim")
SEED = """
from claiim import Gate

gate = Gate(agent_id="deploy-bot", token="{token}")
result = gate.check(action="deploy:staging", target="api-v2")
# result.outcome == "ALLOW"; result.chron_id == "chr_01j..."
print(result.outcome, result.chron_id)
result = gate.check(action="deploy:production", target="api-v2")
# result.outcome == "DENY"; result.reason == "policy:no-prod-v1 -- action not in allow list"
print(result.outcome, result.chron_id, result.reason)
"""
"""The seed example of the design (README, "The seed example"), verbatim but for the token, printing what it gets."""


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CLAIIM_")}


class Up:
    """``claiim up`` in its own process group (as a terminal runs it), ready when it says so."""

    def __init__(self, data_dir: Path, port: int, *args: str) -> None:
        self.data_dir = data_dir
        self.port = port
        self.process = subprocess.Popen(
            [CLAIIM, "up", "--data-dir", str(data_dir), "--nats-port", str(port), "--ui-port", str(free_port()),
             *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(), start_new_session=True,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 90
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith("claiim ready at "):
                return
        self.process.kill()
        raise AssertionError("claiim up never became ready:\n" + "".join(self.lines))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLAIIM, "--env-file", str(self.data_dir / "env"), *args], capture_output=True,
                              text=True, env=clean_env(), timeout=120)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    @property
    def tokens(self) -> dict[str, str]:
        return dict(json.loads((self.data_dir / "demo-tokens.json").read_text()))

    @property
    def env(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in (self.data_dir / "env").read_text().splitlines())


def servers_of(data_dir: Path) -> list[psutil.Process]:
    """The nats-server and postgres processes running on ``data_dir`` (their command lines name it)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            if process.info["name"] in ("nats-server", "postgres") and any(
                    str(data_dir) in arg for arg in process.info["cmdline"] or ()):
                found.append(process)
        except psutil.Error:
            continue
    return found


