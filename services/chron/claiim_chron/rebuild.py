"""Rebuilding Chron from the streams (and the archive), and re-reading the streams (replay, export).

A rebuild needs every leaf's message: from the decision and control streams, and for a decision
stream trimmed after archiving, from the archive's segments (:mod:`claiim_chron.archive`); and the
proofs feed, whose leaf batches give the order in which Chron made the leaves. It stores the leaves
in that order in an empty database, authenticating every event as Chron did (with the gate and
control keyrings: what Chron parked is parked again), copies the checkpoints that verify with the
log's key (the feed's and the archive's), records the archive's segments as archived, and checks the
result with :func:`claiim_chron.verify.verify_log`: the rebuilt tree must have the signed root at
every checkpoint size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec
from claiim_core.checkpoint import CheckpointError, Verifier
from claiim_core.names import Names
from nats.js import JetStreamContext

from claiim_chron.archive import Segment
from claiim_chron.rows import Parked, Row, StreamAuthenticator, to_row
from claiim_chron.store import ChronStore, StoreError
from claiim_chron.verify import Evidence, Report, evidence_from_stream, read_subject, verify_log

BATCH = 1000


@dataclass(frozen=True)
class Message:
    kind: str
    stream: str
    seq: int
    subject: str
    data: bytes
    chron_id: str


async def stream_messages(js: JetStreamContext, names: Names, kind: str, *, start_seq: int = 0,
                          start_time: datetime | None = None) -> AsyncIterator[Message]:
    """The messages of the decision (``kind="decision"``) or control stream, in stream order."""
    stream, subject = ((names.decisions_stream, names.decisions_wildcard) if kind == "decision"
                       else (names.control_stream, names.control_wildcard))
    async for msg in read_subject(js, stream, subject, start_seq=start_seq, start_time=start_time):
        yield Message(kind, stream, msg.metadata.sequence.stream, msg.subject, msg.data, _chron_id(msg.data))


class _Ids(msgspec.Struct):
    chron_id: str = ""
    event_id: str = ""


_ids = msgspec.json.Decoder(_Ids)


def _chron_id(data: bytes) -> str:
    """The chron id an event names (a decision's ``chron_id``, a control event's ``event_id``; its
    ``Nats-Msg-Id`` may be derived from a request id instead), or "" when it does not decode."""
    try:
        ids = _ids.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
    return ids.chron_id or ids.event_id


def _archived(names: Names, segments: list[Segment]) -> list[Message]:
    """The leaves and parked messages the archive holds, as the streams had them."""
    found = [Message(leaf.kind, leaf.stream, leaf.seq, leaf.subject, leaf.event, leaf.chron_id)
             for s in segments for leaf in s.leaves]
    found += [Message("decision" if p.stream == names.decisions_stream else "control", p.stream, p.stream_seq,
                      p.subject, p.data, _chron_id(p.data)) for s in segments for p in s.parked]
    return found


async def rebuild(js: JetStreamContext, names: Names, database_url: str, verifier: Verifier,
                  auth: StreamAuthenticator, archive: list[Segment] | None = None, *, packing: bool = False) -> Report:
    """Build Chron's tables in the empty database at ``database_url`` from the streams and the ``archive``'s
    segments (read and checked by :func:`claiim_chron.archive.read_archive`), the events packed with
    ``packing``; raises :class:`StoreError` when the database is not empty or a leaf's message is in neither."""
    archive = archive or []
    evidence = await evidence_from_stream(js, names)
    known = {(m.stream, m.seq): m for m in _archived(names, archive)}
    for kind in ("decision", "control"):
        async for m in stream_messages(js, names, kind):
            known.setdefault((m.stream, m.seq), m)
    messages: dict[str, Message] = {}
    unnamed: list[Message] = []
    for m in sorted(known.values(), key=lambda m: (m.kind != "decision", m.seq)):
        if m.chron_id and m.chron_id not in messages:
            messages[m.chron_id] = m
        else:
            unnamed.append(m)
    auth.learn_control((m.seq, m.subject) for m in [*messages.values(), *unnamed] if m.kind == "control")
    order = [chron_id for _, leaves in sorted(evidence.batches, key=lambda b: b[0]) for chron_id, _ in leaves]
    gone = [c for c in order if c not in messages]
    if gone:
        where = "the streams or the archive" if archive else "the streams"
        raise StoreError(f"{len(gone)} leaves are in neither {where} (e.g. {gone[0]}); a rebuild needs every "
                         "leaf's message: the streams' whole history, or the archive (--from-archive) and the "
                         "streams since")
    in_feed = set(order)
    rest = sorted((m for m in messages.values() if m.chron_id not in in_feed), key=lambda m: (m.kind, m.seq))
    store = await ChronStore.open(database_url, packing=packing)
    try:
        if store.frontier.size:
            raise StoreError(f"the database already holds {store.frontier.size} leaves: rebuild into an empty one")
        pending: list[Message] = [messages[c] for c in order] + rest + unnamed
        for start in range(0, len(pending), BATCH):
            rows: list[Row] = []
            parked: list[Parked] = []
            for m in pending[start:start + BATCH]:
                item = to_row(m.kind, m.stream, m.seq, m.subject, m.data, auth.check)
                (parked if isinstance(item, Parked) else rows).append(item)  # type: ignore[arg-type]
            await store.append(rows, parked)
        notes = list(dict.fromkeys([*evidence.notes, *(n for s in archive for n in s.checkpoints)]))
        for note in notes:
            try:
                cp = verifier.open(note)
            except CheckpointError:
                continue  # verify_log below names it
            await store.add_checkpoint(cp.size, cp.root, note)
        for s in archive:
            await store.add_archived(s.first, s.end, s.root, s.name, s.size, s.streams, s.newest)
    finally:
        await store.close()
    conn = await asyncpg.connect(database_url)
    try:
        # Statistics of the new rows now, not when autovacuum gets to them: until then PostgreSQL
        # plans searches of a large log badly (an action prefix took 1 s instead of 5 ms at 1M rows).
        await conn.execute("ANALYZE chron_events")
        return await verify_log(conn, verifier, Evidence(notes, evidence.batches), max_age=float("inf"), auth=auth)
    finally:
        await conn.close()
