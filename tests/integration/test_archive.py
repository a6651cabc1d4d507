"""Chron's archive on the real stack: sealed segments written to a folder or an S3-compatible bucket (a local
moto server), the decision stream trimmed of what is archived, and a rebuild into an empty database from the
archive and the stream's tail that reproduces every signed root; `claiim chron verify` passes on it."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from claiim import AsyncAdmin, AsyncGate
from claiim_chron.archive import ArchiveError, Folder, read_archive, segment_name
from claiim_chron.rebuild import rebuild
from claiim_chron.rows import StreamAuthenticator
from claiim_chron.store import StoreError
from claiim_core.schemas import ChronStatus
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import RunningServices, start_services
from claiim_server.servers import ensure_database

from tests.conftest import backend, connect_as, load_demo

pytestmark = pytest.mark.integration
SEGMENT = 16
DECISIONS = 60
CLAIIM = str(Path(sys.executable).with_name("claiim"))


def auth(settings: Settings) -> StreamAuthenticator:
    return StreamAuthenticator(settings.names, settings.require_gate_keyring(), settings.require_control_keyring())


async def inject(settings: Settings, subject: str, data: bytes) -> int:
    """Publish ``data`` as the maintenance user (not a gate: Chron parks it); its stream sequence."""
    nc = await connect_as(settings)
    try:
        return (await nc.jetstream().publish(f"{settings.namespace}.{subject}", data)).seq
    finally:
        await nc.close()


async def load(settings: Settings, running: RunningServices, decisions: int) -> tuple[ChronStatus, int]:
    """Send ``decisions`` checks, a message on an approval's subject early and an undecodable decision message
    half way (both parked), then wait until Chron has stored, checkpointed and archived every whole segment;
    returns the status and the stream sequence of the approval subject's message."""
    tokens = await load_demo(settings)
    async with AsyncGate("deploy-bot", tokens["deploy-bot"], settings.url, namespace=settings.namespace) as gate:
        for i in range(decisions):
            await gate.check("deploy:production" if i % 4 == 0 else "deploy:staging", f"api-{i}")
            if i == 2:
                approval_seq = await inject(settings, "decision.demo.deploy-bot.approval.chr_x", b'{"forged":1}')
            if i == decisions // 2:
                await inject(settings, "decision.demo.deploy-bot.allow", b"not json")
    admin = AsyncAdmin(settings.url, settings.require_admin_token(), namespace=settings.namespace)
    try:
        deadline = time.monotonic() + 30
        while True:
            status = await admin.chron_status()
            whole = status.tree_size // SEGMENT * SEGMENT
            if (status.pending == 0 and status.checkpoint_size == status.tree_size > decisions
                    and status.archived == whole):
                assert running.chron is not None
                await running.chron.archive()  # and the trim after it has run, whatever the timing
                return status, approval_seq
            assert time.monotonic() < deadline, f"Chron did not archive every whole segment: {status}"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def stream_bounds(settings: Settings) -> dict[str, tuple[int, int]]:
    nc = await connect_as(settings)
    try:
        found = {}
        for stream in (settings.names.decisions_stream, settings.names.control_stream):
            state = (await nc.jetstream().stream_info(stream)).state
            found[stream] = (state.first_seq, state.messages)
        return found
    finally:
        await nc.close()


async def leaves(db: str) -> list[tuple[int, str, bytes]]:
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT leaf_index, chron_id, leaf_hash FROM chron_events ORDER BY leaf_index")
        return [(r["leaf_index"], r["chron_id"], bytes(r["leaf_hash"])) for r in rows]
    finally:
        await conn.close()


async def fetch(db: str, sql: str) -> object:
    conn = await asyncpg.connect(db)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.gate_keys is not None
    env = {**os.environ, "CLAIIM_URL": settings.url, "CLAIIM_ADMIN_TOKEN": settings.require_admin_token(),
           "CLAIIM_NAMESPACE": settings.namespace, "CLAIIM_GATE_KEYS": settings.gate_keys.get_secret_value(),
           "CLAIIM_CONTROL_VERIFIERS": settings.control_verifiers,
           "CLAIIM_CHECKPOINT_VERIFIER": str(settings.require_checkpoint_signer().verifier), **extra}
    env.pop("CLAIIM_ORG", None)
    return env


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [CLAIIM, *args], capture_output=True, text=True, env=env,
                                   timeout=120)


async def test_a_trimmed_decision_stream_is_rebuilt_from_the_archive_with_every_signed_root(
        stack_settings: Settings, pg_url: str, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    settings = stack_settings.model_copy(update={"archive": str(archive), "archive_segment": SEGMENT,
                                                 "decisions_keep": 0.0, "checkpoint_interval": 0.2})
    running = await start_services(settings, backend(settings))  # the CLI below logs in through its auth service
    try:
        await archived_trimmed_rebuilt(settings, running, pg_url, archive)
    finally:
        await running.stop()


async def archived_trimmed_rebuilt(settings: Settings, running: RunningServices, pg_url: str, archive: Path) -> None:
    status, approval_seq = await load(settings, running, DECISIONS)
    bounds = await stream_bounds(settings)
    names = settings.names
    size = status.tree_size
    whole = size // SEGMENT * SEGMENT
    assert status.archived_segments == whole // SEGMENT >= 4 and status.archived_bytes > 0, status

    # The archive holds the sealed segments, each checked on reading; the parked message is in one of them.
    segments = await read_archive(Folder(archive))
    assert [(s.first, s.end) for s in segments] == [(i, i + SEGMENT) for i in range(0, whole, SEGMENT)]
    assert sum(len(s.parked) for s in segments) == 2 and segments[0].checkpoints, "parked messages and notes kept"
    original = await leaves(settings.database_url or "")
    assert [(leaf.index, leaf.chron_id) for s in segments for leaf in s.leaves] == [
        (i, c) for i, c, _ in original[:whole]]

    # The decision stream lost what is archived (below the first leaf not archived) but the approval subject's
    # message (younger than 8 days); the control stream is whole.
    first_seq, kept = bounds[names.decisions_stream]
    assert first_seq == approval_seq and kept < DECISIONS // 2, (bounds, approval_seq)
    assert bounds[names.control_stream][0] == 1, bounds

    # Without the archive a rebuild cannot find the trimmed leaves, and says where to look.
    nc = await connect_as(settings)
    try:
        with pytest.raises(StoreError, match="--from-archive"):
            await rebuild(nc.jetstream(), names, await ensure_database(pg_url, f"t_{secrets.token_hex(6)}"),
                          settings.require_checkpoint_signer().verifier, auth(settings))
        # With it (in this process), into an empty database: every signed root reproduced.
        db = await ensure_database(pg_url, f"t_{secrets.token_hex(6)}")
        report = await rebuild(nc.jetstream(), names, db, settings.require_checkpoint_signer().verifier,
                               auth(settings), segments)
    finally:
        await nc.close()
    assert report.ok, report.lines()
    assert report.leaves == size and report.verified_up_to == size, report.lines()
    assert await leaves(db) == original
    assert await fetch(db, "SELECT count(*) FROM chron_checkpoints") == await fetch(
        settings.database_url or "", "SELECT count(*) FROM chron_checkpoints")
    assert await fetch(db, "SELECT count(*) FROM chron_parked") == 2
    assert await fetch(db, "SELECT count(*) FROM chron_archive") == len(segments)

    # The CLI: rebuild from the archive into another empty database, then `chron verify` it.
    env = cli_env(settings)
    db2 = await ensure_database(pg_url, f"t_{secrets.token_hex(6)}")
    done = await cli(env, "chron", "rebuild", "--database", db2, "--from-archive", str(archive))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"read {len(segments)} segments (leaves below {whole})" in done.stderr
    assert f"rebuilt {size} leaves; the roots equal all" in done.stdout
    shown = await cli(env, "chron", "status")  # exit 3: the parked messages are not acknowledged
    assert f"archived:           leaves below {whole} in {len(segments)} segments, " in shown.stdout, shown.stdout
    replayed = await cli(env, "chron", "replay", "--limit", "1")
    assert replayed.returncode == 0 and f"note: {names.decisions_stream} starts at seq {first_seq}:" in (
        replayed.stderr), replayed.stdout + replayed.stderr
    assert json.loads(replayed.stdout.splitlines()[0])["stream_seq"] == first_seq
    checked = await cli(env, "chron", "verify", "--database-url", db2)
    assert checked.returncode == 0 and checked.stdout.splitlines()[-1].startswith(f"OK: {size} leaves"), (
        checked.stdout + checked.stderr)

    # An archive whose segment was changed is refused, naming the segment.
    name = segment_name(SEGMENT, 2 * SEGMENT)
    lines = gzip.decompress((archive / name).read_bytes()).decode().rstrip("\n").split("\n")
    leaf = json.loads(lines[3])
    assert '"target":"api-' in leaf["event"], leaf
    leaf["event"] = leaf["event"].replace('"target":"api-', '"target":"apx-')
    lines[3] = json.dumps(leaf, sort_keys=True)
    (archive / name).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    refused = await cli(env, "chron", "rebuild", "--database", await ensure_database(
        pg_url, f"t_{secrets.token_hex(6)}"), "--from-archive", str(archive))
    assert refused.returncode != 0 and name in refused.stderr and "not to its root" in refused.stderr, (
        refused.stdout + refused.stderr)
    with pytest.raises(ArchiveError, match="not to its root"):
        await read_archive(Folder(archive))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local S3-compatible server (moto) on 127.0.0.1, with a bucket ``claiim-archive``."""
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if moto is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    with (tmp_path / "moto.log").open("w") as out:
        server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        import boto3  # type: ignore[import-untyped]
        client = boto3.client("s3", endpoint_url=endpoint)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.create_bucket(Bucket="claiim-archive")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


async def test_an_s3_archive_keeps_the_stream_until_the_decisions_are_old_enough(
        stack_settings: Settings, pg_url: str, s3_server: str) -> None:
    where = "s3://claiim-archive/logs/one"
    settings = stack_settings.model_copy(update={"archive": where, "archive_endpoint": s3_server,
                                                 "archive_segment": SEGMENT, "checkpoint_interval": 0.2})
    running = await start_services(settings, backend(settings))
    try:
        status, _ = await load(settings, running, 40)
        bounds = await stream_bounds(settings)
        whole = status.tree_size // SEGMENT * SEGMENT
        assert status.archived == whole >= 3 * SEGMENT, status
        assert bounds[settings.names.decisions_stream][0] == 1, "decisions younger than CLAIIM_DECISIONS_KEEP stay"
        env = cli_env(settings, CLAIIM_ARCHIVE_ENDPOINT=s3_server)
        db = await ensure_database(pg_url, f"t_{secrets.token_hex(6)}")
        done = await cli(env, "chron", "rebuild", "--database", db, "--from-archive", where)
    finally:
        await running.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"read {whole // SEGMENT} segments (leaves below {whole}) from {where}" in done.stderr
    assert await leaves(db) == await leaves(settings.database_url or "")



async def test_the_cli_reading_streams_gives_up_when_nobody_admits_it(stack_settings: Settings) -> None:
    """NATS answers but no auth service admits the operator's login: the CLI says so and exits, in seconds
    (nats-py alone would retry the login for ever)."""
    started = time.monotonic()
    done = await cli(cli_env(stack_settings), "chron", "replay", "--limit", "1")
    said = done.stdout + done.stderr
    print(said)
    assert done.returncode != 0 and ("unauthorized" in said or "cannot connect" in said), said
    assert time.monotonic() - started < 60, "it gave up, but only after a minute"
