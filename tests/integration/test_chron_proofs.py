"""Chron's Merkle log end to end: checkpoints, proofs, and a superuser rewriting history.

One signed log is built once (demo bundle, decisions, checkpoints every 0.2 s, then a clean stop
with a last checkpoint). Each tamper case copies its database (``CREATE DATABASE ... TEMPLATE``),
changes it as a PostgreSQL superuser with the append-only triggers off, and runs the verifier
against the checkpoints and leaf batches kept in the proofs stream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest
from claiim import AsyncAdmin, AsyncGate
from claiim_chron.eventcodec import pack, unpack
from claiim_chron.rebuild import rebuild
from claiim_chron.rows import Row, StreamAuthenticator
from claiim_chron.service import ChronService, ForkError
from claiim_chron.store import ChronStore
from claiim_chron.verify import Evidence, Report, evidence_from_stream, verify_log
from claiim_core.checkpoint import Checkpoint, Signer, Verifier
from claiim_core.eventauth import GateKey, GateKeyring, Trusted
from claiim_core.ids import rfc3339
from claiim_core.merkle import leaf_hash
from claiim_core.names import Names
from claiim_core.proofs import ConsistencyProof, InclusionProof, ProofError, check_consistency, check_inclusion
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services
from claiim_server.servers import ensure_database, with_database
from claiim_server.stack import demo_bundle

from tests.conftest import backend, connect_as, new_settings, secured_nats, with_auth

pytestmark = pytest.mark.integration
DECISIONS = 40
DEMO_EVENTS = 9
"""Control events of the demo bundle: the org, three skill and three policy versions, two agents."""


@dataclass
class SignedLog:
    settings: Settings
    server_url: str  # the PostgreSQL server, to make databases on
    template: str  # the database of the log as Chron left it
    verifier: Verifier
    signer: Signer
    evidence: Evidence
    size: int
    chron_ids: list[str]

    async def copy(self) -> str:
        """A new database holding the log, for one tamper case."""
        name = f"t_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        finally:
            await conn.close()
        return with_database(self.server_url, name)

    def auth(self) -> StreamAuthenticator:
        """Both keyrings: what Chron authenticated events with."""
        return StreamAuthenticator(self.settings.names, self.settings.require_gate_keyring(),
                                   self.settings.require_control_keyring())

    async def verify(self, db_url: str, evidence: Evidence | None = None, **kw: object) -> Report:
        conn = await asyncpg.connect(db_url)
        try:
            report = await verify_log(conn, self.verifier, evidence or self.evidence,  # type: ignore[arg-type]
                                      **{"auth": self.auth(), **kw})
        finally:
            await conn.close()
        print("\n".join(report.lines()))  # what `claiim chron verify` prints (pytest -s shows it)
        return report


async def tamper(db_url: str, *statements: str) -> None:
    """Run ``statements`` as the superuser with every trigger off (session_replication_role)."""
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("SET session_replication_role = replica")
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def edited(db_url: str, where: str, old: bytes, new: bytes) -> list[tuple[str, bytes, bytes]]:
    """For each row ``where`` selects: its chron id, its event with ``old`` replaced by ``new``, and
    that event's leaf hash (what an attacker computes to keep the row self-consistent)."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(f"SELECT chron_id, event FROM chron_events WHERE {where}")
    finally:
        await conn.close()
    events = [(r["chron_id"], unpack(bytes(r["event"])).replace(old, new)) for r in rows]
    return [(chron_id, event, leaf_hash(event)) for chron_id, event in events]


def bytea(data: bytes) -> str:
    """``data`` as a PostgreSQL bytea literal."""
    return f"'\\x{data.hex()}'::bytea"


async def stored(chron: ChronService, count: int) -> None:
    for _ in range(200):
        if chron.stored >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"Chron stored {chron.stored} of {count} events")


@pytest.fixture(scope="module")
async def log(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SignedLog]:
    template = f"t_{secrets.token_hex(6)}"
    db_url = await ensure_database(pg_url, template)
    signer = Signer.from_seed("claiim-test", secrets.token_bytes(32))
    namespace = f"t{secrets.token_hex(5)}"
    with secured_nats(tmp_path_factory.mktemp("nats"), Names(namespace)) as (url, credentials):
        settings = Settings(**{**new_settings(url, db_url, namespace, credentials).model_dump(),
                               "checkpoint_key": str(signer), "checkpoint_interval": 0.2, "chron_packing": "zstd",
                               "checkpoint_dir": tmp_path_factory.mktemp("mirror")})
        running = await start_services(settings, backend(settings), instance="proofs")
        admin = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo", namespace=settings.namespace)
        try:
            assert running.chron is not None
            tokens = (await admin.apply(demo_bundle())).tokens
            ids = []
            async with AsyncGate("deploy-bot", tokens["deploy-bot"], settings.url,
                                 namespace=settings.namespace) as gate:
                for i in range(DECISIONS):
                    action = "deploy:production" if i % 4 == 0 else "deploy:staging"
                    ids.append((await gate.check(action=action, target=f"api-{i}")).chron_id)
                    if i % 10 == 9:  # let a checkpoint (every 0.2 s) come between the batches of ten
                        await stored(running.chron, DEMO_EVENTS + i + 1)
                        await asyncio.sleep(0.3)
        finally:
            await admin.close()
            await running.stop()  # signs the last checkpoint if leaves came after the previous one
        nc = await connect_as(settings)
        try:
            evidence = await evidence_from_stream(nc.jetstream(), settings.names)
        finally:
            await nc.close()
        conn = await asyncpg.connect(db_url)
        try:
            size = await conn.fetchval("SELECT count(*) FROM chron_events")
        finally:
            await conn.close()
        yield SignedLog(settings, pg_url, template, signer.verifier, signer, evidence, size, ids)


async def test_the_untouched_log_verifies(log: SignedLog) -> None:
    assert len(log.evidence.notes) >= 2, "expected several checkpoints (every 0.2 s, and one at shutdown)"
    sizes = [Checkpoint.parse_body(n.split("\n\n")[0] + "\n").size for n in log.evidence.notes]
    assert sizes == sorted(sizes) and sizes[-1] == log.size, "the last checkpoint covers every leaf"
    report = await log.verify(await log.copy())
    assert report.ok, report.lines()
    assert (report.leaves, report.verified_up_to, report.authenticated_feed) == (log.size, log.size, log.size)
    assert report.events_checked == "checked for decisions and control events"


async def test_events_are_stored_packed(log: SignedLog) -> None:
    """With CLAIIM_CHRON_PACKING=zstd Chron stores every event packed (format 1, smaller), its leaf hash over the
    event's own bytes."""
    conn = await asyncpg.connect(with_database(log.server_url, log.template))
    try:
        rows = await conn.fetch("SELECT chron_id, event, leaf_hash FROM chron_events")
    finally:
        await conn.close()
    assert len(rows) == log.size
    for r in rows:
        stored = bytes(r["event"])
        event = unpack(stored)
        assert stored[:1] == b"\x01" and len(stored) < len(event), r["chron_id"]
        assert bytes(r["leaf_hash"]) == leaf_hash(event) and event.startswith(b'{"')
    packed, original = sum(len(r["event"]) for r in rows), sum(len(unpack(bytes(r["event"]))) for r in rows)
    assert packed < 0.6 * original, (packed, original)


async def test_mirror_folder_is_the_same_evidence(log: SignedLog) -> None:
    assert log.settings.checkpoint_dir is not None
    mirrored = Evidence.from_dir(log.settings.checkpoint_dir)
    assert sorted(mirrored.notes) == sorted(log.evidence.notes)
    assert mirrored.batches == log.evidence.batches
    assert (await log.verify(await log.copy(), mirrored)).ok


def findings(report: Report, kind: str) -> list[str]:
    assert not report.ok
    return report.findings.get(kind, [])


async def test_a_changed_field_is_named(log: SignedLog) -> None:
    db = await log.copy()
    await tamper(db, "UPDATE chron_events SET outcome = 'ALLOW', reason = 'ok' WHERE chron_id = "
                     f"'{log.chron_ids[0]}'")
    report = await log.verify(db)
    [message] = findings(report, "modified")
    assert log.chron_ids[0] in message and "column(s) outcome, reason differ from the event bytes" in message


async def test_a_deleted_row_is_named(log: SignedLog) -> None:
    db = await log.copy()
    await tamper(db, f"DELETE FROM chron_events WHERE chron_id = '{log.chron_ids[5]}'")
    report = await log.verify(db)
    [missing] = findings(report, "missing")
    assert log.chron_ids[5] in missing
    assert findings(report, "root")


async def test_an_inserted_row_is_named(log: SignedLog) -> None:
    """A forged decision slipped into the middle of history, later leaves shifted to make room."""
    db = await log.copy()
    k = log.size // 2
    [(_, event, _)] = await edited(db, f"chron_id = '{log.chron_ids[1]}'", b"api-1", b"api-forged")
    await tamper(
        db,
        f"UPDATE chron_events SET leaf_index = -leaf_index - 1 WHERE leaf_index >= {k}",
        "UPDATE chron_events SET leaf_index = -leaf_index WHERE leaf_index < 0",
        f"INSERT INTO chron_events ({COPIED}, chron_id, stream_seq, leaf_index, event) SELECT {COPIED}, 'chr_forged', "
        f"-1, {k}, {bytea(event)} FROM chron_events WHERE chron_id = '{log.chron_ids[1]}'",  # plain JSON is read too
    )
    report = await log.verify(db)
    [inserted] = findings(report, "inserted")
    assert inserted.startswith(f"leaf {k} (chr_forged) is not a record of the signed log")
    [shifted] = findings(report, "reordered")
    last = log.size - 1  # the last signed leaf; the one pushed beyond it is not covered by a checkpoint
    assert shifted.startswith(f"leaves {k + 1}..{last} hold the records of leaves {k}..{last - 1} (shifted by +1")
    assert findings(report, "root")


COPIED = ("kind, stream, subject, org, agent_id, actor, outcome, action, target, anchor, policy, skill, reason, rule, "
          "gate, control_seq, occurred_at, leaf_hash")


async def test_swapped_rows_are_named(log: SignedLog) -> None:
    db = await log.copy()
    conn = await asyncpg.connect(db)
    i, j = await conn.fetchval(f"SELECT leaf_index FROM chron_events WHERE chron_id = '{log.chron_ids[2]}'"), \
        await conn.fetchval(f"SELECT leaf_index FROM chron_events WHERE chron_id = '{log.chron_ids[7]}'")
    await conn.close()
    await tamper(db, f"UPDATE chron_events SET leaf_index = -1 WHERE leaf_index = {i}",
                 f"UPDATE chron_events SET leaf_index = {i} WHERE leaf_index = {j}",
                 f"UPDATE chron_events SET leaf_index = {j} WHERE leaf_index = -1")
    reordered = findings(await log.verify(db), "reordered")
    assert f"leaf {i} ({log.chron_ids[7]}) holds the record of leaf {j}; leaf {i} should be {log.chron_ids[2]}" \
        in reordered, reordered
    assert f"leaf {j} ({log.chron_ids[2]}) holds the record of leaf {i}; leaf {j} should be {log.chron_ids[7]}" \
        in reordered, reordered


async def test_a_truncated_tail_is_named(log: SignedLog) -> None:
    db = await log.copy()
    await tamper(db, f"DELETE FROM chron_events WHERE leaf_index >= {log.size - 3}")
    [message] = findings(await log.verify(db), "truncated")
    assert f"the database has {log.size - 3} leaves, but a tree of {log.size} leaves was signed" in message
    assert log.chron_ids[-1] in message


async def test_a_rewritten_row_with_a_recomputed_leaf_hash_is_named(log: SignedLog) -> None:
    """The attacker keeps the row self-consistent: bytes, columns and stored leaf hash all agree."""
    db = await log.copy()
    target = log.chron_ids[4]  # a production deploy: DENY
    [(_, event, h)] = await edited(db, f"chron_id = '{target}'", b'"DENY"', b'"ALLOW"')
    await tamper(db, f"UPDATE chron_events SET outcome = 'ALLOW', event = {bytea(pack(event))}, leaf_hash = {bytea(h)} "
                     f"WHERE chron_id = '{target}'")
    report = await log.verify(db)
    assert findings(report, "modified") == [f"leaf {_index(report, target)} ({target}): its bytes differ from what "
                                            "was signed"]
    assert findings(report, "root")
    [forged] = findings(report, "unauthenticated")
    assert target in forged and "the MAC does not verify with gate key 'test-gate'" in forged


async def test_a_corrupted_packed_event_is_named(log: SignedLog) -> None:
    """A stored event cut short does not unpack: the leaf is named as modified, and the rest still verifies."""
    db = await log.copy()
    target = log.chron_ids[6]
    await tamper(db, f"UPDATE chron_events SET event = substr(event, 1, length(event) - 10) "
                     f"WHERE chron_id = '{target}'")
    report = await log.verify(db)
    index = _index(report, target)
    assert findings(report, "modified") == [
        f"leaf {index} ({target}): the stored event does not unpack: truncated packed event: the frame does not "
        "end", f"leaf {index} ({target}): its bytes differ from what was signed"]
    assert findings(report, "root") and not findings(report, "unauthenticated")
    assert report.leaves == log.size


async def test_a_leaf_checked_with_a_wrong_gate_key_is_unauthenticated(log: SignedLog) -> None:
    """With a keyring that lacks the gate's key, every decision is named; control events still verify."""
    other = GateKeyring([Trusted(GateKey("test-gate", bytes(32)))])
    report = await log.verify(await log.copy(),
                              auth=StreamAuthenticator(log.settings.names, other,
                                                       log.settings.require_control_keyring()))
    named = findings(report, "unauthenticated")
    assert len(named) == DECISIONS and all("the MAC does not verify" in m for m in named)


def _index(report: Report, chron_id: str) -> int:
    for messages in report.findings.values():
        for m in messages:
            if f"({chron_id})" in m:
                return int(m.split()[1])
    raise AssertionError(f"{chron_id} is in no finding")


async def test_a_consistently_rewritten_table_is_caught(log: SignedLog) -> None:
    """Every DENY becomes ALLOW, columns, leaf hashes and the stored subtrees all recomputed."""
    db = await log.copy()
    rewritten = await edited(db, "outcome = 'DENY'", b'"DENY"', b'"ALLOW"')
    conn = await asyncpg.connect(db)
    try:
        first = await conn.fetchval("SELECT min(leaf_index) FROM chron_events WHERE outcome = 'DENY'")
    finally:
        await conn.close()
    await tamper(db, *(f"UPDATE chron_events SET outcome = 'ALLOW', event = {bytea(pack(event))}, "
                       f"leaf_hash = {bytea(h)} WHERE chron_id = '{chron_id}'" for chron_id, event, h in rewritten),
                 "DELETE FROM chron_tree")
    store = await ChronStore.open(db)  # the attacker's Chron recomputes the subtrees from the new leaves
    await store.close()
    report = await log.verify(db)
    denials = [c for i, c in enumerate(log.chron_ids) if i % 4 == 0]
    named = " ".join(findings(report, "modified"))
    assert all(c in named for c in denials)
    # every checkpoint but those Chron signed before the first DENY (how many depends on timing)
    covering = [n for n in log.evidence.notes if log.verifier.open(n).size > first]
    assert report.checkpoints == len(log.evidence.notes) and covering
    assert len(findings(report, "root")) == len(covering)


async def test_a_bad_signature_and_a_fork_are_named(log: SignedLog) -> None:
    other = Signer.from_seed("claiim-test", bytes(32))
    last = log.verifier.open(log.evidence.notes[-1])
    forged_by_other = other.sign(Checkpoint(last.origin, last.size + 5, bytes(32), last.time))
    equivocation = log.signer.sign(Checkpoint(last.origin, last.size, bytes(32), last.time))
    evidence = Evidence([*log.evidence.notes, forged_by_other, equivocation], log.evidence.batches)
    report = await log.verify(await log.copy(), evidence)
    [bad] = findings(report, "bad-signature")
    assert f"tree size {last.size + 5}" in bad and "no signature by claiim-test" in bad
    [fork] = findings(report, "fork")
    assert f"two signed trees of {last.size} leaves" in fork


async def test_leaves_waiting_too_long_for_a_checkpoint_are_stale(log: SignedLog) -> None:
    evidence = Evidence(log.evidence.notes[:-1], log.evidence.batches)  # as if the last checkpoint never came
    newest = log.verifier.open(evidence.notes[-1])
    later = datetime.fromisoformat(newest.time) + timedelta(seconds=120)
    [stale] = findings(await log.verify(await log.copy(), evidence, max_age=60.0, now=later), "stale")
    assert f"{log.size - newest.size} leaves have no checkpoint" in stale
    assert (await log.verify(await log.copy(), evidence, max_age=300.0, now=later)).ok


async def test_inclusion_and_consistency_proofs_verify_offline(log: SignedLog, tmp_path: Path) -> None:
    """Proofs come from a running Chron over NATS; checking them needs only the public key."""
    db = await log.copy()
    with isolated(log, db, tmp_path) as settings:
        running = await start_services(settings, with_auth(settings, "chron"), instance="proofs-2")
        admin = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo", namespace=settings.namespace)
        try:
            await proofs_verify_offline(log, admin)
        finally:
            await admin.close()
            await running.stop()


async def proofs_verify_offline(log: SignedLog, admin: AsyncAdmin) -> None:
    bundle = await admin.chron_prove(log.chron_ids[4])  # a production deploy: DENY
    proven = check_inclusion(msgspec.convert(bundle, InclusionProof), log.verifier)
    assert proven.event["chron_id"] == log.chron_ids[4] and proven.event["outcome"] == "DENY"
    leaf = base64.b64decode(bundle["leaf"]).replace(b'"DENY"', b'"ALLOW"')
    with pytest.raises(ProofError, match="not in the signed tree"):
        check_inclusion(msgspec.convert({**bundle, "leaf": base64.b64encode(leaf).decode()}, InclusionProof),
                        log.verifier)
    with pytest.raises(ProofError, match="no signature"):
        check_inclusion(msgspec.convert(bundle, InclusionProof), Signer.from_seed("x", bytes(32)).verifier)
    sizes = [c.size for c in await admin.chron_checkpoints(limit=100)]
    first = min(sizes)
    first_cp, second_cp = check_consistency(msgspec.convert(await admin.chron_consistency(first), ConsistencyProof),
                                            log.verifier)
    assert (first_cp.size, second_cp.size) == (first, max(sizes))


@contextmanager
def isolated(log: SignedLog, db: str, directory: Path) -> Iterator[Settings]:
    """Settings for another Chron on a copy of the log: own database, namespace and nats-server, so
    that what it publishes (its proofs feed) does not mix with the log's; the same keys."""
    namespace = f"t{secrets.token_hex(5)}"
    with secured_nats(directory / "nats", Names(namespace)) as (url, credentials):
        nats = {} if credentials is None else {"nats_passwords": credentials.passwords_setting,
                                               "nats_issuer_seed": credentials.issuer_seed}
        yield Settings(**{**log.settings.model_dump(), "url": url, "database_url": db, "checkpoint_dir": None,
                          "namespace": namespace, **nats})


async def test_chron_refuses_to_sign_a_fork(log: SignedLog, tmp_path: Path) -> None:
    """With its stored tree rewritten under it, Chron will not sign a tree that does not extend its last one."""
    db = await log.copy()
    with isolated(log, db, tmp_path) as settings:
        await refuses_a_fork(log, db, settings)


async def refuses_a_fork(log: SignedLog, db: str, settings: Settings) -> None:
    running = await start_services(settings, which=("chron",), instance="fork")
    try:
        chron = running.chron
        assert chron is not None and chron.last_checkpoint is not None
        await tamper(db, "UPDATE chron_events SET leaf_hash = sha256(leaf_hash)", "UPDATE chron_tree SET hash = "
                         "sha256(hash)")
        event = json.dumps({"schema": "x"}).encode()
        await chron.store.append([Row("chr_extra", "decision", "X", 1, "s", "demo", "a", "", "DENY", "a", "", "", "",
                                      "", "", "", "", 0, datetime.now(UTC), event)], [])
        with pytest.raises(ForkError):
            await chron.checkpoint()
        assert chron.checkpoint_error is not None and "a fork" in chron.checkpoint_error
        assert [c.size for c in await chron.store.checkpoints()][-1] == log.size, "a checkpoint was signed"
    finally:
        await running.stop()  # its last checkpoint is refused the same way (and logged)


async def test_rebuild_from_the_streams_reproduces_every_signed_root(log: SignedLog) -> None:
    db = await ensure_database(log.server_url, f"t_{secrets.token_hex(6)}")
    nc = await connect_as(log.settings)
    try:
        report = await rebuild(nc.jetstream(), log.settings.names, db, log.verifier, log.auth())
    finally:
        await nc.close()
    assert report.ok, report.lines()
    assert report.leaves == log.size and report.verified_up_to == log.size
    conn = await asyncpg.connect(db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM chron_checkpoints") == len(log.evidence.notes)
    finally:
        await conn.close()


def test_checkpoint_times_are_signed(log: SignedLog) -> None:
    times = [log.verifier.open(n).time for n in log.evidence.notes]
    assert all(t.endswith("Z") for t in times) and times == sorted(times)
    assert rfc3339(0) < times[0]


def test_mirror_files(log: SignedLog) -> None:
    assert log.settings.checkpoint_dir is not None
    files = sorted(Path(log.settings.checkpoint_dir, "checkpoints").glob("*.txt"))
    assert len(files) == len(log.evidence.notes)
    assert files[-1].name == f"{log.size:012d}.txt"
