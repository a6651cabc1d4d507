"""``claiim chron ...``: proofs, checkpoints, whole-log verification, replay, export and rebuild.

``verify-proof`` and ``verify-consistency`` work offline. ``verify``, ``replay`` and ``rebuild``
read the streams (and PostgreSQL) directly, as operators' tools; so does ``export`` for the operator,
while an org admin, auditor or anchor exports through Chron's query API, which answers with its own
org's records only. The others go through Chron's query API with an admin token. The tools that
check events' authentication take the gate keyring (``--gate-keys``, default
``CLAIIM_GATE_KEYS(_FILE)``) and the control verifier keys (``--control-keys``, default
``CLAIIM_CONTROL_VERIFIERS(_FILE)``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, get_args

import asyncpg
import msgspec
from claiim import AsyncAdmin
from claiim.errors import AdminError, NotCheckpointedError
from claiim.transport import connect_with_token, resolve_url
from claiim_chron.archive import ArchiveError, place_of, read_archive
from claiim_chron.rebuild import Message, rebuild, stream_messages
from claiim_chron.rows import StreamAuthenticator
from claiim_chron.verify import Evidence, IncompleteRead, evidence_from_stream, verify_log
from claiim_core.access import OPERATOR
from claiim_core.checkpoint import CheckpointError, Verifier
from claiim_core.eventauth import (
    AuthError,
    ControlKeyring,
    GateKeyring,
    KeyFormatError,
    check_control,
    check_decision,
)
from claiim_core.events import decode_control
from claiim_core.names import Names
from claiim_core.ocsf import ocsf_decision
from claiim_core.proofs import ConsistencyProof, InclusionProof, ProofError, check_consistency, check_inclusion
from claiim_core.schemas import DecisionEvent
from claiim_runtime.settings import Settings
from nats.aio.client import Client

from claiim_server.cli.output import fields, table, to_json
from claiim_server.cli.usage import WHEN_HELP, when

PROOF_WAIT_S = 12.0


def add_commands(chron: Any, leaf: Any) -> None:
    """Add the proof and operations commands to the ``chron`` group (``leaf`` makes a command)."""
    ls = leaf(chron, "checkpoints", "recent signed checkpoints, newest first", org=False)
    ls.add_argument("--limit", type=int, default=20, help="at most this many checkpoints (default 20)")
    leaf(chron, "status", "leaves stored, the newest checkpoint, messages still to store, and whether Chron is "
                          "ready (exit 3 if not)", org=False)
    parked = leaf(chron, "parked", "messages Chron did not make leaves (undecodable, not authentic, replayed); "
                                   "operator only", org=False)
    parked.add_argument("--all", action="store_true", help="also those already acknowledged")
    parked.add_argument("--limit", type=int, default=100, help="at most this many messages (default 100)")
    parked.add_argument("--ack", nargs="*", type=int, metavar="ID",
                        help="acknowledge these parked messages (none given: every one not yet acknowledged)")
    parked.add_argument("--reason", default="", help="why they are acknowledged (required with --ack)")
    prove = leaf(chron, "prove", "write a self-contained inclusion proof of one record", json=False)
    prove.add_argument("chron_id", help="chr_..., from `chron list`")
    prove.add_argument("-o", "--output", type=Path, required=True, help="the file to write the proof (JSON) to")
    vp = chron.add_parser("verify-proof", help="verify an inclusion proof offline, with the log's public key")
    vp.add_argument("proof", type=Path, help="the proof file `chron prove` wrote")
    _key_option(vp)
    _event_key_options(vp)
    cons = leaf(chron, "consistency", "write a proof that one checkpoint extends another", org=False, json=False)
    cons.add_argument("first", type=int, help="tree size of the earlier checkpoint")
    cons.add_argument("second", type=int, nargs="?", default=0, help="tree size of the later one (default: newest)")
    cons.add_argument("-o", "--output", type=Path, required=True, help="the file to write the proof (JSON) to")
    vc = chron.add_parser("verify-consistency", help="verify a consistency proof offline")
    vc.add_argument("proof", type=Path, help="the proof file `chron consistency` wrote")
    _key_option(vc)
    verify = chron.add_parser("verify", help="check the whole database against the signed checkpoints")
    _key_option(verify)
    verify.add_argument("--database-url", default=None, help="default: CLAIIM_DATABASE_URL")
    verify.add_argument("--from-dir", type=Path, help="read checkpoints and leaf batches from this mirror folder "
                                                      "instead of the proofs stream")
    verify.add_argument("--max-age", type=float, default=60.0,
                        help="seconds leaves may wait for a checkpoint before the log is stale (default 60)")
    _event_key_options(verify)
    for name, text in (("replay", "re-read the decision (or control) stream: print or republish events"),
                       ("export", "print decisions as JSON lines, native or OCSF: the operator every org's "
                                  "(from the stream), an org admin or auditor its own org's (through Chron)")):
        cmd = chron.add_parser(name, help=text, description=text)
        start = cmd.add_mutually_exclusive_group()
        start.add_argument("--from-seq", type=int, default=0, help="first stream sequence")
        start.add_argument("--since", type=when, help="events from this time on: " + WHEN_HELP +
                           ", e.g. 2h or 2026-11-25T10:00:00+00:00")
        cmd.add_argument("--limit", type=int, default=0, help="stop after this many events")
        if name == "replay":
            cmd.add_argument("--stream", choices=["decisions", "control"], default="decisions",
                             help="the stream to read (default: decisions)")
            cmd.add_argument("--republish", metavar="PREFIX",
                             help="publish each event to PREFIX.<its subject> instead of printing it")
        else:
            cmd.add_argument("--format", choices=["jsonl", "ocsf"], default="jsonl",
                             help="jsonl: the decision events as recorded (default); ocsf: OCSF API Activity")
    rb = chron.add_parser("rebuild", help="build a fresh Chron database from the streams (and an archive) and check it")
    rb.add_argument("--database", required=True, help="URL of an empty PostgreSQL database")
    rb.add_argument("--from-archive", metavar="WHERE",
                    help="the archive of the leaves the decision stream no longer holds: a folder or s3://BUCKET/PREFIX")
    rb.add_argument("--archive-endpoint", metavar="URL", default=os.environ.get("CLAIIM_ARCHIVE_ENDPOINT"),
                    help="an S3-compatible server's URL (default: CLAIIM_ARCHIVE_ENDPOINT; unset: AWS)")
    rb.add_argument("--packing", choices=PACKINGS,
                    help="how the rebuilt rows hold their events (default: CLAIIM_CHRON_PACKING, else none)")
    _key_option(rb)
    _event_key_options(rb)


def _key_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--key", help="verifier key NAME+ID+BASE64, or a file holding it "
                                   "(default: CLAIIM_CHECKPOINT_VERIFIER)")


def _event_key_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--gate-keys", type=Path, metavar="FILE",
                     help="the gate keyring, to check decisions' MACs (default: CLAIIM_GATE_KEYS or _FILE)")
    cmd.add_argument("--control-keys", type=Path, metavar="FILE",
                     help="the control verifier keys, to check control events' signatures "
                          "(default: CLAIIM_CONTROL_VERIFIERS or _FILE)")


def _keyring_text(path: Path | None, variable: str) -> str | None:
    try:
        if path is not None:
            return path.read_text()
        if os.environ.get(variable):
            return os.environ[variable]
        if os.environ.get(f"{variable}_FILE"):
            return Path(os.environ[f"{variable}_FILE"]).read_text()
    except OSError as e:
        raise AdminError(f"cannot read the {variable} keyring: {e}") from e
    return None


def _authenticator(args: argparse.Namespace, *, required: bool = False) -> StreamAuthenticator:
    gate = _keyring_text(args.gate_keys, "CLAIIM_GATE_KEYS")
    control = _keyring_text(args.control_keys, "CLAIIM_CONTROL_VERIFIERS")
    if required and (gate is None or control is None):
        raise AdminError("a rebuild authenticates every event as Chron did: give --gate-keys and --control-keys "
                         "(or CLAIIM_GATE_KEYS_FILE and CLAIIM_CONTROL_VERIFIERS)")
    try:
        return StreamAuthenticator(_names(), GateKeyring.parse(gate) if gate is not None else None,
                                   ControlKeyring.parse(control) if control is not None else None)
    except KeyFormatError as e:
        raise AdminError(f"bad keyring: {e}") from e


def _verifier(text: str | None) -> Verifier:
    value = text or os.environ.get("CLAIIM_CHECKPOINT_VERIFIER", "")
    if value and Path(value).is_file():
        value = Path(value).read_text()
    if not value:
        raise AdminError("no verifier key: pass --key or set CLAIIM_CHECKPOINT_VERIFIER")
    try:
        return Verifier.parse(value)
    except CheckpointError as e:
        raise AdminError(f"bad verifier key: {e}") from e


PACKINGS: tuple[str, ...] = get_args(Settings.model_fields["chron_packing"].annotation)
"""What ``CLAIIM_CHRON_PACKING`` may say."""


def _names() -> Names:
    return Names(os.environ.get("CLAIIM_NAMESPACE") or "claiim")


OFFLINE = {"verify-proof", "verify-consistency"}
DIRECT = {"verify", "replay", "export", "rebuild"}


P = TypeVar("P", InclusionProof, ConsistencyProof)


def _load_proof(path: Path, kind: type[P], what: str) -> P:
    try:
        return msgspec.json.decode(path.read_bytes(), type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProofError(f"{path} is not {what}: {e}") from e


def verify_proof(args: argparse.Namespace) -> int:
    verifier = _verifier(args.key)
    try:
        proof = _load_proof(args.proof, InclusionProof, "an inclusion proof")
        proven = check_inclusion(proof, verifier)
    except ProofError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    event, cp = proven.event, proven.checkpoint
    what = (f"{event.get('outcome')} {event.get('agent_id')} {event.get('action')} {event.get('target')} "
            f"({event.get('reason')})" if "outcome" in event else f"{event.get('type')} by {event.get('actor')}")
    try:
        authenticated = _event_authentication(base64.b64decode(proof.leaf), "outcome" in event, _authenticator(args))
    except AuthError as e:
        print(f"FAIL: {proof.chron_id} is leaf {proven.leaf_index} of {cp.origin}, but the event is not authentic: {e}",
              file=sys.stderr)
        return 1
    print(f"OK: {proof.chron_id} is leaf {proven.leaf_index} of {cp.origin}, in the tree of {cp.size} leaves "
          f"signed {cp.time or '(no time)'} by {verifier.name}+{verifier.key_id.hex()}")
    print(f"    {what}")
    print(f"    {authenticated}")
    return 0


def _event_authentication(data: bytes, decision: bool, auth: StreamAuthenticator) -> str:
    """Which key vouches for the proven event; raises :class:`AuthError` when it does not verify."""
    try:
        if decision:
            if auth.gate_keys is None:
                return "its gate MAC was not checked (no gate keys: --gate-keys or CLAIIM_GATE_KEYS_FILE)"
            key = check_decision(msgspec.json.decode(data, type=DecisionEvent), auth.gate_keys)
            return f"decided by a gate holding key {key!r} (MAC verified)"
        if auth.control_keys is None:
            return "its signature was not checked (no control keys: --control-keys or CLAIIM_CONTROL_VERIFIERS)"
        key = check_control(decode_control(data), auth.control_keys)
        return f"signed by the control key {key} (signature verified)"
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise AuthError(f"the event does not decode: {e}") from e


def verify_consistency(args: argparse.Namespace) -> int:
    verifier = _verifier(args.key)
    try:
        first, second = check_consistency(_load_proof(args.proof, ConsistencyProof, "a consistency proof"), verifier)
    except ProofError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print(f"OK: the tree of {second.size} leaves ({second.time}) extends the tree of {first.size} leaves "
          f"({first.time}) of {first.origin}: nothing signed before was changed or dropped")
    return 0


async def checkpoints(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    found = await admin.chron_checkpoints(args.limit)
    if args.json:
        print(to_json(found))
    else:
        print(table(found, ("size", "signed_at", "root")))
    return 0


STATUS_FIELDS = ("tree_size", "last_recorded_at", "checkpoint_size", "checkpoint_signed_at", "pending", "parked")
NOT_READY = 3
"""``chron status``'s exit code when Chron reports problems."""


async def status(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    found = await admin.chron_status()
    if args.json:
        print(to_json(found))
    else:
        print(fields(found, STATUS_FIELDS))
        if found.disk:
            print("disk:")
            width = max(len(name) for name in found.disk)
            for name, size in found.disk.items():
                print(f"  {name:<{width}}  {size / 2**20:10.1f} MiB")
        if found.archived_segments:
            print(f"archived:           leaves below {found.archived} in {found.archived_segments} segments, "
                  f"{found.archived_bytes / 2**20:.1f} MiB")
        print("ready:              " + ("yes" if not found.problems else "NO"))
        for problem in found.problems:
            print(f"  - {problem}")
    return NOT_READY if found.problems else 0


async def parked(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    if args.ack is not None:
        if not args.reason:
            raise AdminError("--ack needs --reason: the acknowledgement is recorded with it")
        done = await admin.chron_acknowledge_parked(args.ack, args.reason)
        print(f"acknowledged {len(done)} parked message(s){': ' + ', '.join(map(str, done)) if done else ''}")
        return 0
    found = await admin.chron_parked(unacknowledged=not args.all, limit=args.limit)
    if args.json:
        print(to_json(found))
    elif not found:
        print("no parked messages" + ("" if args.all else " waiting for acknowledgement"))
    else:
        print(table(found, ("id", "parked_at", "stream", "stream_seq", "subject", "error", "acked_by")))
    return 0


async def prove(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    """Fetch the proof, waiting for the next checkpoint if the record is newer than the last one."""
    deadline = asyncio.get_running_loop().time() + PROOF_WAIT_S
    while True:
        try:
            proof = await admin.chron_prove(args.chron_id)
            break
        except NotCheckpointedError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    await asyncio.to_thread(args.output.write_text, json.dumps(proof, indent=1) + "\n")
    print(f"wrote {args.output}: {args.chron_id} is leaf {proof['leaf_index']} of a signed tree of "
          f"{proof['tree_size']} leaves ({len(proof['audit_path'])} hashes)")
    return 0


async def consistency(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    proof = await admin.chron_consistency(args.first, args.second)
    await asyncio.to_thread(args.output.write_text, json.dumps(proof, indent=1) + "\n")
    print(f"wrote {args.output}: {len(proof['proof'])} hashes")
    return 0


async def _connect() -> Client:
    """A connection as the operator (CLAIIM_ADMIN_TOKEN): it may read claiim's streams."""
    token = os.environ.get("CLAIIM_ADMIN_TOKEN", "")
    if not token:
        raise AdminError("reading the streams needs the operator token: set CLAIIM_ADMIN_TOKEN")
    return await connect_with_token(resolve_url(None), token, name="claiim-cli", reconnects=0)


async def verify(args: argparse.Namespace) -> int:
    verifier = _verifier(args.key)
    url = args.database_url or os.environ.get("CLAIIM_DATABASE_URL")
    if not url:
        raise AdminError("no database: pass --database-url or set CLAIIM_DATABASE_URL")
    if args.from_dir:
        evidence = await asyncio.to_thread(Evidence.from_dir, args.from_dir)
        source = str(args.from_dir)
    else:
        nc = await _connect()
        try:
            evidence = await evidence_from_stream(nc.jetstream(), _names())
        except IncompleteRead as e:
            raise AdminError(str(e)) from None
        finally:
            await nc.close()
        source = f"the {_names().proofs_stream} stream"
    print(f"verifying against {len(evidence.notes)} checkpoints and {len(evidence.batches)} leaf batches from "
          f"{source}", file=sys.stderr)
    auth = _authenticator(args)
    conn = await asyncpg.connect(url)
    try:
        report = await verify_log(conn, verifier, evidence, max_age=args.max_age, progress=_progress, auth=auth)
    finally:
        await conn.close()
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _progress(done: int, total: int, seconds: float) -> None:
    print(f"  ... {done:,} of {total:,} leaves ({done / seconds:,.0f}/s)", file=sys.stderr, flush=True)


async def _events(args: argparse.Namespace, kind: str) -> AsyncIterator[Message]:
    nc = await _connect()
    try:
        since = datetime.fromisoformat(args.since) if args.since else None
        stream = _names().decisions_stream if kind == "decision" else _names().control_stream
        first = (await nc.jetstream().stream_info(stream)).state.first_seq
        if first > max(args.from_seq, 1):
            print(f"note: {stream} starts at seq {first}: what came before was trimmed after archiving; it is in "
                  "Chron (`claiim chron list`) and in the archive (docs/chron.md, \"The archive\")", file=sys.stderr)
        n = 0
        async for m in stream_messages(nc.jetstream(), _names(), kind, start_seq=args.from_seq, start_time=since):
            yield m
            n += 1
            if args.limit and n >= args.limit:
                return
    finally:
        await nc.close()


async def replay(args: argparse.Namespace) -> int:
    kind = "decision" if args.stream == "decisions" else "control"
    publisher = await _connect() if args.republish else None
    count = 0
    try:
        async for m in _events(args, kind):
            if publisher is not None:
                await publisher.publish(f"{args.republish}.{m.subject}", m.data)
            else:
                print(json.dumps({"stream_seq": m.seq, "subject": m.subject, "event": json.loads(m.data)}))
            count += 1
    finally:
        if publisher is not None:
            await publisher.flush()
            await publisher.close()
    print(f"{count} events {'republished under ' + args.republish if args.republish else 'replayed'}",
          file=sys.stderr)
    return 0


async def export(args: argparse.Namespace) -> int:
    """The operator exports the whole decision stream; anyone else what Chron's query API lets them read
    (an org admin or auditor: its org's decisions; an anchor: its agents'), scoped by Chron itself."""
    admin = AsyncAdmin(namespace=_names().namespace)
    try:
        if (await admin.whoami()).role != OPERATOR:
            return await _export_records(admin, args)
    finally:
        await admin.close()
    decode = msgspec.json.Decoder(DecisionEvent)
    async for m in _events(args, "decision"):
        try:
            event = decode.decode(m.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            print(f"skipped stream seq {m.seq}: not a decision event", file=sys.stderr)
            continue
        _print_decision(event, args.format)
    return 0


def _print_decision(event: DecisionEvent, fmt: str) -> None:
    value = ocsf_decision(event) if fmt == "ocsf" else msgspec.to_builtins(event)
    print(json.dumps(value, separators=(",", ":"), sort_keys=True))


EXPORT_PAGE = 1000


async def _export_records(admin: AsyncAdmin, args: argparse.Namespace) -> int:
    """Export through Chron's query API, oldest first: Chron answers only with the records the token may
    read, so an org admin's export holds its org's decisions and nothing else. ``--from-seq`` and
    ``--since`` then pick among those records."""
    since = datetime.fromisoformat(args.since.replace("Z", "+00:00")) if args.since else None
    decode = msgspec.json.Decoder(DecisionEvent)
    page = await admin.chron_list(kind="decision", before=EXPORT_PAGE, limit=EXPORT_PAGE)  # leaves 0..PAGE-1
    last, count = EXPORT_PAGE - 1, 0
    while True:
        for record in reversed(page):
            if record.stream_seq < args.from_seq or (since and datetime.fromisoformat(
                    record.occurred_at.replace("Z", "+00:00")) < since):
                continue
            _print_decision(decode.decode(record.event), args.format)
            count += 1
            if args.limit and count >= args.limit:
                return 0
        last = max([last, *(r.leaf_index for r in page)])
        page = await admin.chron_list(kind="decision", after=last, limit=EXPORT_PAGE)
        if not page:
            return 0


async def rebuild_cmd(args: argparse.Namespace) -> int:
    verifier = _verifier(args.key)
    auth = _authenticator(args, required=True)
    segments = []
    if args.from_archive:
        try:
            place = place_of(args.from_archive, args.archive_endpoint)
            segments = await read_archive(place)
        except ArchiveError as e:
            raise AdminError(str(e)) from None
        leaves = segments[-1].end if segments else 0
        print(f"read {len(segments)} segments (leaves below {leaves}) from {place.where}", file=sys.stderr)
    packing = args.packing or os.environ.get("CLAIIM_CHRON_PACKING") or "none"
    if packing not in PACKINGS:
        raise AdminError(f"CLAIIM_CHRON_PACKING is {packing!r}: {' or '.join(PACKINGS)}")
    nc = await _connect()
    try:
        report = await rebuild(nc.jetstream(), _names(), args.database, verifier, auth, segments,
                               packing=packing == "zstd")
    finally:
        await nc.close()
    print("\n".join(report.lines()))
    if report.ok:
        print(f"rebuilt {report.leaves} leaves; the roots equal all {report.checkpoints} signed checkpoints")
    return 0 if report.ok else 1


def run_offline(args: argparse.Namespace) -> int:
    return {"verify-proof": verify_proof, "verify-consistency": verify_consistency}[args.subcommand](args)


def run_direct(args: argparse.Namespace) -> int:
    handlers = {"verify": verify, "replay": replay, "export": export, "rebuild": rebuild_cmd}
    return asyncio.run(handlers[args.subcommand](args))
