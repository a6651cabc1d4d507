"""``claiim chron verify``: check Chron's database against evidence kept outside it.

The evidence is the signed checkpoints and the proofs feed (batches of ``(chron id, leaf hash)``),
read from the proofs stream or from a mirror folder, and the log's public key. The feed is only
trusted as far as it reproduces the signed roots, so an attacker who can write to PostgreSQL
(even a superuser who disables the append-only triggers and recomputes every hash) is caught, and
each changed leaf is named:

- every checkpoint must carry a good signature by the key; two good ones of one size with
  different roots are a **fork**;
- the database's tree must have the signed root at every checkpoint size;
- every row's stored event must unpack (:mod:`claiim_chron.eventcodec`), its bytes must hash to its
  stored leaf hash, and its columns must be what its event bytes say;
- every leaf the feed authenticates must be in the database at its index: otherwise it is
  **modified**, **reordered** (another leaf's record), **inserted** (a record the log never
  had) or **missing**;
- a database smaller than a signed tree is **truncated**; leaves with no checkpoint for longer
  than ``max_age`` are **stale**;
- with the gate and control keyrings, every leaf's event must be authentic (a valid MAC of a
  trusted gate key, or a control key's signature in its place in the stream): otherwise it is
  **unauthenticated**.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
from claiim_core.checkpoint import Checkpoint, CheckpointError, Verifier
from claiim_core.merkle import Frontier, leaf_hash
from claiim_core.names import Names
from claiim_core.proofs import LeafBatch
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError as JetStreamServiceUnavailable

from claiim_chron.eventcodec import EventCodecError, unpack
from claiim_chron.rows import ROW_COLUMNS, Parked, StreamAuthenticator, to_row

SHOWN_PER_KIND = 50
"""Findings printed per kind; the rest are counted."""


@dataclass(frozen=True)
class Evidence:
    """What was kept outside the database: signed notes, and leaf batches ``(first, [(id, hash)])``."""

    notes: list[str]
    batches: list[tuple[int, list[tuple[str, bytes]]]]

    @classmethod
    def from_dir(cls, folder: Path) -> Evidence:
        """A mirror folder as Chron writes it: ``checkpoints/*.txt`` and ``leaves.jsonl``."""
        notes = [p.read_text() for p in sorted((folder / "checkpoints").glob("*.txt"))]
        batches = []
        feed = folder / "leaves.jsonl"
        if feed.exists():
            for line in feed.read_text().splitlines():
                if line.strip():
                    batches.append(parse_batch(line.encode()))
        return cls(notes, batches)


def parse_batch(data: bytes) -> tuple[int, list[tuple[str, bytes]]]:
    batch = LeafBatch.decode(data)
    return batch.first, batch.pairs()


@dataclass
class Report:
    findings: dict[str, list[str]] = field(default_factory=dict)
    leaves: int = 0
    checkpoints: int = 0
    verified_up_to: int = 0
    """Leaves ``[0, verified_up_to)`` are covered by a good checkpoint."""
    authenticated_feed: int = 0
    seconds: float = 0.0
    events_checked: str = "not checked (no keys given)"
    """Which events' MACs and signatures were checked."""

    def add(self, kind: str, message: str) -> None:
        self.findings.setdefault(kind, []).append(message)

    @property
    def ok(self) -> bool:
        return not self.findings

    def lines(self) -> list[str]:
        out = []
        for kind, messages in self.findings.items():
            out += [f"{kind.upper()}: {m}" for m in messages[:SHOWN_PER_KIND]]
            if len(messages) > SHOWN_PER_KIND:
                out.append(f"{kind.upper()}: ... and {len(messages) - SHOWN_PER_KIND} more")
        rate = self.leaves / self.seconds if self.seconds else 0.0
        verdict = "OK" if self.ok else f"FAILED ({sum(len(m) for m in self.findings.values())} findings)"
        out.append(f"{verdict}: {self.leaves} leaves, {self.checkpoints} good checkpoints, leaves below "
                   f"{self.verified_up_to} covered by a signature, feed authenticated to {self.authenticated_feed}, "
                   f"events' authentication {self.events_checked}; {self.seconds:.2f} s ({rate:,.0f} leaves/s)")
        return out


def _checkpoints(notes: Iterable[str], verifier: Verifier, report: Report) -> dict[int, Checkpoint]:
    good: dict[int, Checkpoint] = {}
    for n, note in enumerate(notes):
        try:
            cp = verifier.open(note)
        except CheckpointError as e:
            try:
                claimed = f"tree size {Checkpoint.parse_body(note.partition(chr(10) * 2)[0] + chr(10)).size}"
            except CheckpointError:
                claimed = "unreadable"
            report.add("bad-signature", f"checkpoint #{n} ({claimed}): {e}")
            continue
        other = good.get(cp.size)
        if other is not None and other.root != cp.root:
            report.add("fork", f"two signed trees of {cp.size} leaves: roots {other.root.hex()} and {cp.root.hex()}")
            continue
        good[cp.size] = cp
    report.checkpoints = len(good)
    return good


def _feed(batches: list[tuple[int, list[tuple[str, bytes]]]], good: dict[int, Checkpoint],
          report: Report) -> tuple[list[str], list[bytes]]:
    """The feed's leaves as far as they are contiguous and reproduce every signed root they reach."""
    ids: list[str] = []
    hashes: list[bytes] = []
    for first, leaves in sorted(batches, key=lambda b: b[0]):
        if first > len(hashes):
            report.add("feed", f"the proofs feed has no leaves {len(hashes)}..{first - 1}")
            break
        for chron_id, h in leaves[len(hashes) - first:]:
            ids.append(chron_id)
            hashes.append(h)
    frontier = Frontier()
    trusted = 0
    sizes = sorted(s for s in good if s <= len(hashes))
    for size in sizes:
        while frontier.size < size:
            frontier.append(hashes[frontier.size])
        if frontier.root() != good[size].root:
            report.add("feed", f"the proofs feed does not reproduce checkpoint {size}; it is used up to {trusted}")
            break
        trusted = size
    report.authenticated_feed = trusted
    return ids[:trusted], hashes[:trusted]


def _check_row(row: asyncpg.Record, name: str, report: Report, auth: StreamAuthenticator | None) -> bytes:
    """The leaf hash of a row's event bytes, reporting what is wrong with the row itself: bytes that
    do not unpack (then the hash is of the bytes stored), a stored leaf hash or columns that do not
    match the bytes, and (with ``auth``) an event that is not authentic."""
    stored = bytes(row["event"])
    try:
        data = unpack(stored)
    except EventCodecError as e:
        report.add("modified", f"{name}: the stored event does not unpack: {e}")
        return leaf_hash(stored)
    h = leaf_hash(data)
    if bytes(row["leaf_hash"]) != h:
        report.add("modified", f"{name}: the stored leaf hash does not match the stored event bytes")
    derived = to_row(row["kind"], row["stream"], row["stream_seq"], row["subject"], data)
    if isinstance(derived, Parked):
        report.add("modified", f"{name}: the stored event does not decode: {derived.error}")
        return h
    changed = [c for c, v in zip(ROW_COLUMNS, derived, strict=True) if c != "event" and row[c] != v]
    if changed:
        report.add("modified", f"{name}: column(s) {', '.join(changed)} differ from the event bytes")
    if auth is not None:
        checked = to_row(row["kind"], row["stream"], row["stream_seq"], row["subject"], data, auth.check)
        if isinstance(checked, Parked):
            report.add("unauthenticated", f"{name}: {checked.error}")
    return h


async def verify_log(conn: asyncpg.Connection, verifier: Verifier, evidence: Evidence, *, max_age: float = 60.0,
                     now: datetime | None = None, progress: Callable[[int, int, float], None] | None = None,
                     batch: int = 20_000, auth: StreamAuthenticator | None = None) -> Report:
    """Check the database behind ``conn`` against ``evidence``; every problem is a finding."""
    started = time.monotonic()
    report = Report()
    if auth is not None:
        report.events_checked = _what_is_checked(auth)
        auth.learn_control(await _control_positions(conn, auth.names))
    good = _checkpoints(evidence.notes, verifier, report)
    ids, hashes = _feed(evidence.batches, good, report)
    where = {h: i for i, h in enumerate(hashes)}
    where_id = {c: i for i, c in enumerate(ids)}
    sizes = sorted(good)
    total = await conn.fetchval("SELECT count(*) FROM chron_events")
    frontier = Frontier()
    seen: set[int] = set()
    next_size = 0
    moved: list[tuple[int, str, int]] = []
    last_progress = started
    columns = ", ".join(c for c in ROW_COLUMNS if c != "event")
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(f"SELECT leaf_index, leaf_hash, {columns}, event FROM chron_events ORDER BY leaf_index",
                             prefetch=batch)
        async for row in cursor:
            index, chron_id = row["leaf_index"], row["chron_id"]
            name = f"leaf {index} ({chron_id})"
            h = _check_row(row, name, report, auth)
            if index != frontier.size:
                if index > frontier.size:
                    gap = (f"leaf {frontier.size} is" if index == frontier.size + 1
                           else f"leaves {frontier.size}..{index - 1} are")
                    report.add("missing", f"{gap} not in the database"
                               + _expected(ids, range(frontier.size, min(index, len(ids)))))
                while frontier.size < index:  # keep the tree aligned to the indexes: a gap hashes as empty
                    frontier.append(leaf_hash(b""))
            seen.add(index)
            if index < len(hashes) and h != hashes[index]:
                j = where.get(h)
                if j is not None:
                    moved.append((index, chron_id, j))
                elif chron_id == ids[index]:
                    report.add("modified", f"{name}: its bytes differ from what was signed")
                elif chron_id in where_id:
                    report.add("reordered", f"{name} was leaf {where_id[chron_id]} and was changed; leaf {index} "
                                            f"should be {ids[index]}")
                else:
                    report.add("inserted", f"{name} is not a record of the signed log; leaf {index} should be "
                                           f"{ids[index]}")
            frontier.append(h)
            while next_size < len(sizes) and sizes[next_size] <= frontier.size:
                size = sizes[next_size]
                if size == frontier.size and frontier.root() != good[size].root:
                    report.add("root", f"the database's tree of {size} leaves does not match the signed checkpoint "
                                       f"(leaves below {size} were changed)")
                next_size += 1
            report.leaves += 1
            if progress is not None and time.monotonic() - last_progress >= 2.0:
                last_progress = time.monotonic()
                progress(report.leaves, total, last_progress - started)
    _report_moves(moved, ids, report)
    signed = sizes[-1] if sizes else 0
    if frontier.size < signed:
        report.add("truncated", f"the database has {frontier.size} leaves, but a tree of {signed} leaves was signed"
                   + _expected(ids, range(frontier.size, min(signed, len(ids)))))
    report.verified_up_to = min(signed, frontier.size)
    uncovered = frontier.size - signed
    newest = good[signed] if signed else None
    age = _age(newest, now) if newest else None
    if uncovered > 0 and (newest is None or (age is not None and age > max_age)):
        since = "no checkpoint at all" if newest is None else f"the newest checkpoint is {age:.0f} s old"
        report.add("stale", f"{uncovered} leaves have no checkpoint and {since} (limit {max_age:g} s)")
    report.seconds = time.monotonic() - started
    return report


def _what_is_checked(auth: StreamAuthenticator) -> str:
    checked = [what for what, ring in (("decisions", auth.gate_keys), ("control events", auth.control_keys))
               if ring is not None]
    return f"checked for {' and '.join(checked)}" if checked else "not checked (no keys given)"


async def _control_positions(conn: asyncpg.Connection, names: Names) -> list[tuple[int, str]]:
    """Every control-stream message Chron took, leaf or parked: each one's predecessor on its subject."""
    rows = await conn.fetch("SELECT stream_seq, subject FROM chron_events WHERE stream = $1 UNION ALL "
                            "SELECT stream_seq, subject FROM chron_parked WHERE stream = $1", names.control_stream)
    return [(r["stream_seq"], r["subject"]) for r in rows]


def _report_moves(moved: list[tuple[int, str, int]], ids: list[str], report: Report) -> None:
    """One finding per moved leaf, except runs of three or more shifted alike (an insertion or a
    deletion before them), which are one finding."""
    run: list[tuple[int, str, int]] = []

    def flush() -> None:
        if len(run) >= 3:
            (a, _, ja), (b, _, jb) = run[0], run[-1]
            report.add("reordered", f"leaves {a}..{b} hold the records of leaves {ja}..{jb} (shifted by {a - ja:+d}: "
                                    "a leaf was inserted or deleted before them)")
        else:
            for i, chron_id, j in run:
                report.add("reordered", f"leaf {i} ({chron_id}) holds the record of leaf {j}; leaf {i} should be "
                                        f"{ids[i]}")
        run.clear()

    for item in moved:
        if run and not (item[0] == run[-1][0] + 1 and item[0] - item[2] == run[-1][0] - run[-1][2]):
            flush()
        run.append(item)
    flush()


def _expected(ids: list[str], indexes: range) -> str:
    named = [f"{i} ({ids[i]})" for i in list(indexes)[:5]]
    return f"; the signed log had {', '.join(named)}{' ...' if len(indexes) > 5 else ''}" if named else ""


def _age(checkpoint: Checkpoint, now: datetime | None) -> float | None:
    if not checkpoint.time:
        return None
    signed = datetime.fromisoformat(checkpoint.time)
    return ((now or datetime.now(signed.tzinfo)) - signed).total_seconds()


async def read_subject(js: JetStreamContext, stream: str, subject: str, *, start_seq: int = 0,
                       start_time: datetime | None = None, fetch: int = 1000) -> AsyncIterator[Msg]:
    """Every message of ``subject`` in ``stream`` from a point (default: the start), then stop."""
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, filter_subject=subject, inactive_threshold=30.0,
                            deliver_policy=DeliverPolicy.ALL)
    if start_seq:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, start_seq
    elif start_time is not None:
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = start_time
    psub = await js.pull_subscribe(subject, stream=stream, config=config)
    try:
        while True:
            try:
                msgs = await psub.fetch(fetch, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                return
            for msg in msgs:
                yield msg
            if msgs[-1].metadata.num_pending == 0:
                return
    finally:
        await psub.unsubscribe()


class IncompleteRead(RuntimeError):
    """A read of a stream could not be completed: the NATS server that served it had fewer messages
    than the stream's leader, or JetStream did not serve it (no leader yet, a replica starting)."""


READ_ATTEMPTS = 5


async def read_all(js: JetStreamContext, stream: str, subject: str) -> list[Msg]:
    """Every message of ``subject`` in ``stream``, checked against the count the stream's leader
    gives. A consumer can be served by a replica that is still catching up after a failover, and
    skips what that replica lacks; and a replicated stream answers 503 while it has no leader. Such
    a read is done again (up to :data:`READ_ATTEMPTS` times, a second apart), then refused with
    :class:`IncompleteRead` rather than taken as the evidence."""
    problem = ""
    for _ in range(READ_ATTEMPTS):
        try:
            state = (await js.stream_info(stream, subjects_filter=subject)).state
            want = (state.subjects or {}).get(subject, 0)
            msgs = [m async for m in read_subject(js, stream, subject)]
        except (JetStreamServiceUnavailable, NoRespondersError) as e:
            problem = f"JetStream did not serve the read ({type(e).__name__}): its leader may be changing"
        else:
            got = sum(1 for m in msgs if m.metadata.sequence.stream <= state.last_seq)
            if got >= want:
                return msgs
            problem = f"it gave {got} of the {want} messages its leader has: a replica is catching up"
        await asyncio.sleep(1.0)
    raise IncompleteRead(f"reading {subject} from stream {stream}, {READ_ATTEMPTS} times: {problem}; try again")


async def evidence_from_stream(js: JetStreamContext, names: Names) -> Evidence:
    notes = [m.data.decode() for m in await read_all(js, names.proofs_stream, names.chron_checkpoint)]
    batches = [parse_batch(m.data) for m in await read_all(js, names.proofs_stream, names.chron_leaves)]
    return Evidence(notes, batches)
