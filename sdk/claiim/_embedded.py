"""``claiim up``: the whole stack on one machine, for newcomers, demos and tests.

It starts nats-server (JetStream, data in DIR/nats) and PostgreSQL (pgserver, data in DIR/pg)
unless URLs of existing servers are given, then the gate, control handler and Chron in this
process with the admin web UI (``--ui-port``, default 8480), applies the demo bundle, and writes:

- ``DIR/env``: ``CLAIIM_URL``, ``CLAIIM_ADMIN_TOKEN`` (the operator token), ``CLAIIM_DATABASE_URL``,
  ``CLAIIM_NAMESPACE``, ``CLAIIM_UI_URL`` and, with the demo, ``CLAIIM_ORG=demo`` (source it, or let the CLI read it
  from ``./.claiim/env``);
- ``DIR/demo-tokens.json``: agent id to token, mode 600;
- ``DIR/demo-admins.json``: the demo org's admins (alice, bob) and auditor (audrey) to their
  tokens, mode 600;
- ``DIR/secrets.json``: the token secret and operator token of this dev stack, mode 600;
- ``DIR/checkpoint.key`` (mode 600) and ``DIR/checkpoint.pub``: Chron's checkpoint signing key
  and its verifier key (also ``CLAIIM_CHECKPOINT_VERIFIER`` in ``DIR/env``); checkpoints and
  leaf batches are mirrored to ``DIR/chron-mirror``.

All data stays across restarts. This dev mode is the only place claiim makes up its own secrets.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from claiim_core.checkpoint import Signer
from claiim_runtime.settings import Settings

from claiim._admin import AsyncAdmin
from claiim._errors import StackError
from claiim._servers import NatsProcess, ensure_database, port_free, start_nats, start_postgres
from claiim._services import BACKEND, start_services


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    nats_port: int = 4222
    nats_url: str | None = None
    database_url: str | None = None
    demo: bool = True
    ui_port: int = 8480
    """The admin web UI's port on 127.0.0.1 (0: any free port)."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (mode 600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def load_checkpoint_key(data_dir: Path) -> Signer:
    """This dev stack's checkpoint signing key (DIR/checkpoint.key, mode 600), made on first start.

    Its verifier key goes to DIR/checkpoint.pub. The key never goes to PostgreSQL.
    """
    path = data_dir / "checkpoint.key"
    if path.exists():
        return Signer.parse(path.read_text())
    signer = Signer.from_seed("claiim-dev", secrets.token_bytes(32))
    write_private(path, f"{signer}\n")
    (data_dir / "checkpoint.pub").write_text(f"{signer.verifier}\n")
    return signer


def load_secrets(data_dir: Path) -> dict[str, str]:
    path = data_dir / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    values = {"token_secret": secrets.token_urlsafe(32), "admin_token": "adm_" + secrets.token_urlsafe(32)}
    write_private(path, json.dumps(values, indent=2) + "\n")
    return values


def demo_bundle() -> dict[str, Any]:
    text = resources.files("claiim._cli").joinpath("demo-bundle.yaml").read_text()
    return dict(yaml.safe_load(text))


async def run_up(opts: UpOptions, stop: asyncio.Event, say: Any = print) -> None:
    """Start the stack, announce it, and run until ``stop`` is set."""
    started = time.monotonic()
    if opts.ui_port and not port_free(opts.ui_port):
        raise StackError(f"port {opts.ui_port} is already in use on 127.0.0.1 (another claiim up?); choose another "
                         f"port for the admin UI with --ui-port")
    data_dir = opts.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    keys = load_secrets(data_dir)
    signer = load_checkpoint_key(data_dir)
    nats: NatsProcess | None = None
    pg: Any = None
    running = None
    try:
        if opts.nats_url:
            nats_url = opts.nats_url
        else:
            nats = await asyncio.to_thread(start_nats, opts.nats_port, data_dir / "nats")
            nats_url = nats.url
        if opts.database_url:
            db_url = opts.database_url
        else:
            pg, server_url = await asyncio.to_thread(start_postgres, data_dir / "pg")
            db_url = await ensure_database(server_url, "claiim")
        settings = Settings(url=nats_url, database_url=db_url, token_secret=keys["token_secret"],
                            admin_token=keys["admin_token"], checkpoint_key_file=data_dir / "checkpoint.key",
                            checkpoint_dir=data_dir / "chron-mirror", checkpoint_verifier=str(signer.verifier),
                            ui_port=opts.ui_port)
        running = await start_services(settings, (*BACKEND, "admin"), instance="embedded")
        assert running.admin is not None
        ui_url = running.admin.url
        env = (f"CLAIIM_URL={nats_url}\nCLAIIM_ADMIN_TOKEN={keys['admin_token']}\n"
               f"CLAIIM_DATABASE_URL={db_url}\nCLAIIM_NAMESPACE={settings.namespace}\n"
               f"CLAIIM_CHECKPOINT_VERIFIER={signer.verifier}\nCLAIIM_CHECKPOINT_DIR={data_dir / 'chron-mirror'}\n"
               f"CLAIIM_UI_URL={ui_url}\n"
               + (f"CLAIIM_ORG={DEMO_ORG}\n" if opts.demo else ""))
        write_private(data_dir / "env", env)
        if opts.demo:
            await load_demo(nats_url, keys["admin_token"], data_dir, say)
        say(f"claiim ready at {nats_url} in {time.monotonic() - started:.1f}s "
            f"(data in {data_dir}; `set -a; . {data_dir}/env; set +a` for the CLI)")
        say(f"admin UI at {ui_url} (log in with a token from {data_dir / 'demo-admins.json'} or the operator "
            f"token CLAIIM_ADMIN_TOKEN in {data_dir / 'env'})")
        await stop.wait()
        say("claiim stopping")
    finally:
        if running is not None:
            await running.stop()
        if nats is not None:
            await asyncio.to_thread(nats.stop)
        if pg is not None:
            await asyncio.to_thread(pg.cleanup)


DEMO_ORG = "demo"
DEMO_ADMINS: tuple[tuple[str, Literal["admin", "auditor"]], ...] = (
    ("alice", "admin"), ("bob", "admin"), ("audrey", "auditor"))
"""Two admins (two-person control needs a second one) and a read-only auditor of the demo org."""


async def load_demo(url: str, admin_token: str, data_dir: Path, say: Any) -> None:
    """Apply the demo bundle and enrol the demo admins; tokens go to files readable by the owner only."""
    admin = AsyncAdmin(url, admin_token, org=DEMO_ORG)
    try:
        reply = await admin.apply(demo_bundle())
        enrolled = {a.name for a in await admin.admins()}
        admin_tokens = {name: await admin.enrol_admin(name, role) for name, role in DEMO_ADMINS
                        if name not in enrolled}
    finally:
        await admin.close()
    tokens_path = data_dir / "demo-tokens.json"
    admins_path = data_dir / "demo-admins.json"
    for path, new in ((tokens_path, reply.tokens), (admins_path, admin_tokens)):
        saved = json.loads(path.read_text()) if path.exists() else {}
        if new:
            write_private(path, json.dumps(saved | new, indent=2) + "\n")
    say("demo bundle: " + ("; ".join(c for c in reply.changes if not c.startswith("unchanged"))
                           or "unchanged"))
    say(f"demo agents: tokens in {tokens_path}; demo admins {', '.join(n for n, _ in DEMO_ADMINS)}: "
        f"tokens in {admins_path}")


def main_up(opts: UpOptions) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_up(opts, stop, lambda line: print(line, flush=True))

    asyncio.run(runner())
