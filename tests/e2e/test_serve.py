"""``claiim serve`` against existing servers, as compose runs it, and its refusal to start unconfigured."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from claiim import AsyncAdmin, AsyncGate
from claiim_core.checkpoint import Signer
from claiim_core.names import Names
from claiim_server.servers import NatsCredentials, ensure_database, free_port, start_nats
from claiim_server.stack import demo_bundle

from tests.conftest import AUTH_ON

pytestmark = pytest.mark.e2e
CLAIIM = str(Path(sys.executable).parent / "claiim")


def env_without_claiim(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CLAIIM_")}, **extra}


def keygen(*args: str) -> str:
    """Run ``claiim keygen``; what it prints after the key's file name (the public half, if any)."""
    out = subprocess.run([CLAIIM, "keygen", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    if "-o" in args:
        assert stat.S_IMODE(Path(args[args.index("-o") + 1]).stat().st_mode) == 0o600
    return out.stdout.strip().rsplit(" ", 1)[-1]


async def test_serve_all_runs_the_decision_path(pg_url: str, tmp_path: Path) -> None:
    """`claiim serve all` with keys made by `claiim keygen` and settings from the environment, against a
    nats-server running claiim's configuration, answers checks and fills Chron."""
    namespace = f"s{secrets.token_hex(5)}"
    admin_token = "adm_" + secrets.token_hex(8)
    db_url = await ensure_database(pg_url, f"serve_{secrets.token_hex(4)}")
    checkpoint_verifier = keygen("checkpoint", "serve-test", "-o", str(tmp_path / "chron.key"))
    control_verifier = keygen("control", "serve-control", "-o", str(tmp_path / "control.key"))
    keygen("gate", "serve-gate", "-o", str(tmp_path / "gate.key"))
    issuer_public = keygen("nats-issuer", "-o", str(tmp_path / "issuer.seed"))
    assert checkpoint_verifier.startswith("serve-test+") and control_verifier.startswith("serve-control+")
    assert issuer_public.startswith("A") and keygen("nats-password").startswith("p")
    nats_env: dict[str, str] = {}
    if AUTH_ON:
        generated = NatsCredentials.generate()
        credentials = NatsCredentials(generated.passwords, (tmp_path / "issuer.seed").read_text().strip())
        server = start_nats(free_port(), tmp_path / "nats", credentials=credentials, names=Names(namespace))
        nats_url = server.url
        nats_env = {"CLAIIM_NATS_PASSWORDS": credentials.passwords_setting,
                    "CLAIIM_NATS_ISSUER_SEED_FILE": str(tmp_path / "issuer.seed")}
    else:
        nats_url = os.environ["CLAIIM_TEST_NATS_URL"]
    ui_port = free_port()
    env = env_without_claiim(CLAIIM_URL=nats_url, CLAIIM_DATABASE_URL=db_url, CLAIIM_NAMESPACE=namespace,
                             CLAIIM_TOKEN_SECRET=secrets.token_urlsafe(32), CLAIIM_ADMIN_TOKEN=admin_token,
                             CLAIIM_CHECKPOINT_KEY_FILE=str(tmp_path / "chron.key"),
                             CLAIIM_CHECKPOINT_VERIFIER=checkpoint_verifier, CLAIIM_UI_PORT=str(ui_port),
                             CLAIIM_CONTROL_KEY_FILE=str(tmp_path / "control.key"),
                             CLAIIM_CONTROL_VERIFIERS=control_verifier,
                             CLAIIM_GATE_KEY_FILE=str(tmp_path / "gate.key"),
                             CLAIIM_GATE_KEYS_FILE=str(tmp_path / "gate.key"), **nats_env)
    services = ["gate", "control", "chron", "ocsf", *(["auth"] if AUTH_ON else []), "admin"]
    process = await asyncio.create_subprocess_exec(CLAIIM, "--env-file", os.devnull, "serve", *services,
                                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        lines = [await asyncio.wait_for(process.stdout.readline(), timeout=30)]
        while lines[-1] and not lines[-1].startswith(b"claiim serving"):  # log lines come first
            lines.append(await asyncio.wait_for(process.stdout.readline(), timeout=30))
        assert lines[-1].decode().startswith(f"claiim serving {', '.join(services)}"), lines
        assert any(b"admin UI at http://127.0.0.1:" in line for line in lines), lines
        with await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{ui_port}/login", timeout=10) as page:
            assert page.status == 200 and b"admin token" in page.read()
        admin = AsyncAdmin(nats_url, admin_token, namespace=namespace)  # admitted by the auth service
        tokens = (await admin.apply(demo_bundle())).tokens
        async with AsyncGate("deploy-bot", tokens["deploy-bot"], nats_url, namespace=namespace) as gate:
            result = await gate.check(action="deploy:staging", target="api-v2")
        assert result.outcome == "ALLOW"
        for _ in range(100):
            if await admin.chron_show(result.chron_id):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("decision not in Chron")
        records = await admin.chron_list(agent_id="deploy-bot", outcome="ALLOW")
        assert [r.chron_id for r in records] == [result.chron_id]
        assert await admin.chron_list(agent_id="deploy-bot", outcome="DENY") == []
        assert await admin.chron_list(since="2999-01-01T00:00:00+00:00") == []
        assert len(await admin.chron_list(kind="control", limit=100)) == 9
        await admin.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        if AUTH_ON:
            server.stop()


SECRET = {"CLAIIM_TOKEN_SECRET": "s3cret"}
OPERATOR = {**SECRET, "CLAIIM_ADMIN_TOKEN": "a"}
VERIFIERS = {"CLAIIM_CONTROL_VERIFIERS": str(Signer.from_seed("claiim-control", bytes(32)).verifier)}


@pytest.mark.parametrize(("service", "given", "missing"), [
    ("gate", {}, "CLAIIM_TOKEN_SECRET"), ("control", {}, "CLAIIM_TOKEN_SECRET"), ("chron", {}, "CLAIIM_TOKEN_SECRET"),
    ("control", SECRET, "CLAIIM_ADMIN_TOKEN"),
    ("chron", SECRET, "CLAIIM_ADMIN_TOKEN"),
    ("chron", {**OPERATOR, "CLAIIM_DATABASE_URL": "postgresql://x/y"}, "CLAIIM_CHECKPOINT_KEY"),
    ("admin", {}, "CLAIIM_CHECKPOINT_VERIFIER"),
    ("gate", SECRET, "CLAIIM_CONTROL_VERIFIERS"),
    ("gate", {**SECRET, **VERIFIERS}, "CLAIIM_GATE_KEY"),
    ("control", OPERATOR, "CLAIIM_CONTROL_VERIFIERS"),
    ("control", {**OPERATOR, **VERIFIERS}, "CLAIIM_CONTROL_KEY"),
    ("ocsf", {}, "CLAIIM_GATE_KEYS"),
    ("auth", {**OPERATOR, **VERIFIERS}, "CLAIIM_NATS_ISSUER_SEED"),
])
def test_services_refuse_to_start_without_their_secrets(nats_url: str, tmp_path: Path, service: str,
                                                        given: dict[str, str], missing: str) -> None:
    """A service without its secret stops at once and says which variable to set."""
    out = subprocess.run([CLAIIM, "--env-file", os.devnull, "serve", service], capture_output=True,
                         text=True, timeout=30, env=env_without_claiim(CLAIIM_URL=nats_url, **given))
    assert out.returncode == 2
    assert f"{missing} is not set" in out.stdout + out.stderr
