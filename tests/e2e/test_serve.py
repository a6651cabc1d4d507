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
from claiim._embedded import demo_bundle
from claiim._servers import ensure_database, free_port

pytestmark = pytest.mark.e2e
CLAIIM = str(Path(sys.executable).parent / "claiim")


def env_without_claiim(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CLAIIM_")}, **extra}


async def test_serve_all_runs_the_decision_path(nats_url: str, pg_url: str, tmp_path: Path) -> None:
    """`claiim serve all` with settings from the environment answers checks and fills Chron."""
    namespace = f"s{secrets.token_hex(5)}"
    admin_token = "adm_" + secrets.token_hex(8)
    db_url = await ensure_database(pg_url, f"serve_{secrets.token_hex(4)}")
    keygen = await asyncio.to_thread(subprocess.run, [CLAIIM, "chron", "keygen", "serve-test", "-o",
                                                      str(tmp_path / "chron.key")], capture_output=True, text=True,
                                     timeout=60)
    assert keygen.returncode == 0 and "verifier key (publish it to auditors): serve-test+" in keygen.stdout
    assert stat.S_IMODE((tmp_path / "chron.key").stat().st_mode) == 0o600
    verifier = keygen.stdout.split("verifier key (publish it to auditors): ", 1)[1].split()[0]
    ui_port = free_port()
    env = env_without_claiim(CLAIIM_URL=nats_url, CLAIIM_DATABASE_URL=db_url, CLAIIM_NAMESPACE=namespace,
                             CLAIIM_TOKEN_SECRET=secrets.token_urlsafe(32), CLAIIM_ADMIN_TOKEN=admin_token,
                             CLAIIM_CHECKPOINT_KEY_FILE=str(tmp_path / "chron.key"),
                             CLAIIM_CHECKPOINT_VERIFIER=verifier, CLAIIM_UI_PORT=str(ui_port))
    process = await asyncio.create_subprocess_exec(CLAIIM, "--env-file", str(tmp_path / "none"), "serve", "all",
                                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        lines = [await asyncio.wait_for(process.stdout.readline(), timeout=30)]
        while lines[-1] and not lines[-1].startswith(b"claiim serving"):  # log lines come first
            lines.append(await asyncio.wait_for(process.stdout.readline(), timeout=30))
        assert lines[-1].decode().startswith("claiim serving gate, control, chron, ocsf, admin"), lines
        assert any(b"admin UI at http://127.0.0.1:" in line for line in lines), lines
        with await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{ui_port}/login", timeout=10) as page:
            assert page.status == 200 and b"admin token" in page.read()
        admin = AsyncAdmin(nats_url, admin_token, namespace=namespace)
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


@pytest.mark.parametrize(("service", "given", "missing"), [
    ("gate", {}, "CLAIIM_TOKEN_SECRET"), ("control", {}, "CLAIIM_TOKEN_SECRET"), ("chron", {}, "CLAIIM_TOKEN_SECRET"),
    ("control", {"CLAIIM_TOKEN_SECRET": "s3cret"}, "CLAIIM_ADMIN_TOKEN"),
    ("chron", {"CLAIIM_TOKEN_SECRET": "s3cret"}, "CLAIIM_ADMIN_TOKEN"),
    ("chron", {"CLAIIM_TOKEN_SECRET": "s3cret", "CLAIIM_ADMIN_TOKEN": "a", "CLAIIM_DATABASE_URL": "postgresql://x/y"},
     "CLAIIM_CHECKPOINT_KEY"),
    ("admin", {}, "CLAIIM_CHECKPOINT_VERIFIER"),
])
def test_services_refuse_to_start_without_their_secrets(nats_url: str, tmp_path: Path, service: str,
                                                        given: dict[str, str], missing: str) -> None:
    """A service without its secret stops at once and says which variable to set."""
    out = subprocess.run([CLAIIM, "--env-file", str(tmp_path / "none"), "serve", service], capture_output=True,
                         text=True, timeout=30, env=env_without_claiim(CLAIIM_URL=nats_url, **given))
    assert out.returncode == 2
    assert f"{missing} is not set" in out.stdout + out.stderr
