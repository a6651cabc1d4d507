"""Chron's PostgreSQL adapter: migrations, the Merkle log's appends, proofs' node reads, queries.

The writer (one per database: it holds an advisory lock for its lifetime, so a second Chron
waits as a standby) keeps the tree's right edge (:class:`claiim_core.merkle.Frontier`) in
memory: appending a batch assigns dense leaf indexes, and its rows and newly complete subtrees
are inserted in one transaction, with no read of earlier nodes. Events are stored as they are or,
with packing on, packed (:mod:`claiim_chron.eventcodec`); both are read back as their original
bytes. Every driver error is translated into :class:`StoreError` so that callers never see
asyncpg's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
from claiim_core.merkle import Frontier, Node, leaf_hash, root_nodes

from claiim_chron.eventcodec import EventCodecError, pack_many, unpack
from claiim_chron.rows import ROW_COLUMNS, Parked, Row
from claiim_chron.search import Search, search_sql

log = logging.getLogger(__name__)
_MIGRATION_LOCK = 0x636C61696D  # "claim": one migrator at a time
CLOSE_WAIT_S = 2.0
"""How long closing waits for PostgreSQL before dropping its connections."""
CONNECT_TIMEOUT_S = 5.0
"""How long a new PostgreSQL connection may take (an unreachable host must not stall a batch for a minute)."""
_WRITER_LOCK = 0x636C61696E  # one leaf writer per database
SEGMENT_CHUNK = 1024
"""Leaves read (and unpacked: about 6 ms) in one query when a segment is archived."""
PACK_CHUNK = 1024
"""Rows hashed (and packed) between two yields to the event loop (about 4 ms; 14 with packing)."""
_DRIVER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
# Plan every statement for its values: asyncpg prepares statements, and PostgreSQL's generic plan of
# a search cannot use an index for ``action LIKE $1`` or a partial index for ``kind = $1``.
_SESSION = {"plan_cache_mode": "force_custom_plan"}


class StoreError(RuntimeError):
    """PostgreSQL could not do what Chron asked."""


class NotWriterError(StoreError):
    """Another Chron holds the writer lock: this one is a standby until it gets the lock."""


_COLUMNS = (*ROW_COLUMNS, "leaf_index", "leaf_hash")
_NODE_COLUMNS = ("level", "idx", "hash")


def _event(chron_id: str, stored: bytes) -> bytes:
    """A row's event bytes from the form ``chron_events.event`` holds them in (:mod:`claiim_chron.eventcodec`)."""
    try:
        return unpack(stored)
    except EventCodecError as e:
        raise StoreError(f"the stored event of {chron_id} does not unpack: {e}") from e
_INSERT_NODES = ("INSERT INTO chron_tree (level, idx, hash) SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[]) "
                 "ON CONFLICT DO NOTHING")
# What is already stored of a batch: rows of the same chron id or stream position, and parked
# messages of the same position (NULL chron id).
_STORED = ("SELECT stream, stream_seq, chron_id, leaf_index FROM chron_events WHERE chron_id = ANY($1::text[]) "
           "UNION SELECT e.stream, e.stream_seq, e.chron_id, e.leaf_index "
           "FROM unnest($2::text[], $3::int8[]) AS b(stream, seq) "
           "JOIN chron_events e ON e.stream = b.stream AND e.stream_seq = b.seq UNION "
           "SELECT p.stream, p.stream_seq, NULL, NULL FROM unnest($2::text[], $3::int8[]) AS b(stream, seq) "
           "JOIN chron_parked p ON p.stream = b.stream AND p.stream_seq = b.seq")


@dataclass(frozen=True, slots=True)
class Appended:
    """What one batch added: leaves ``[first, first + len(leaves))`` as ``(chron_id, leaf hash)``;
    ``duplicates`` were already stored (redelivered), ``replayed`` were parked (a stored chron id
    at a new stream position)."""

    first: int
    leaves: list[tuple[str, bytes]]
    duplicates: int
    replayed: list[Parked]


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class SegmentLeaf:
    """A leaf as the archive keeps it: its place in the tree and its stream, and its bytes."""

    index: int
    chron_id: str
    kind: str
    stream: str
    seq: int
    subject: str
    event: bytes
    occurred_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ArchivedSegment:
    """A segment recorded in ``chron_archive``: leaves ``[first, end)``, and per stream the highest sequence
    of a leaf or parked message up to its end."""

    first: int
    end: int
    name: str
    streams: dict[str, int]
_HIGH = ("SELECT greatest((SELECT max(stream_seq) FROM chron_events WHERE stream = $1), "
         "(SELECT max(stream_seq) FROM chron_parked WHERE stream = $1), 0)")
_PARK = (
    "INSERT INTO chron_parked (stream, stream_seq, subject, data, error) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
)


def _positions(rows: list[Row], parked: list[Parked]) -> list[tuple[str, int]]:
    """The ``(stream, stream sequence)`` of every message of a batch."""
    return [(r.stream, r.stream_seq) for r in rows] + [(p.stream, p.stream_seq) for p in parked]


def _usable(conn: asyncpg.Connection) -> bool:
    """Whether the pooled connection ``conn`` is still open: the pool takes a connection that
    closed (PostgreSQL went away) back, and every call on it then raises InterfaceError."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


def _connection_lost(conn: asyncpg.Connection, error: BaseException | None) -> bool:
    """Whether ``error`` broke the connection (rather than refusing one statement): the server
    closed it, the network failed, or PostgreSQL reported a connection or shutdown error (SQLSTATE
    class 08 or 57)."""
    if not _usable(conn) or not isinstance(error, asyncpg.PostgresError):
        return True
    return str(getattr(error, "sqlstate", "") or "")[:2] in ("08", "57")


class ChronStore:
    def __init__(self, pool: asyncpg.Pool, *, packing: bool = False) -> None:
        self._pool = pool
        self._packing = packing
        """Whether new rows' events are stored packed (:mod:`claiim_chron.eventcodec`)."""
        self._writer: asyncpg.Connection | None = None
        self._append_lock = asyncio.Lock()
        self.frontier = Frontier()
        """The tree as committed: its size and right edge (writer only)."""
        self._high: dict[str, int] = {}
        """Per stream, the highest stream sequence stored or parked (writer only; read when first needed)."""
        self.reconnects = 0
        """Times the writer connection broke and was dropped, to be replaced by the next batch."""

    @classmethod
    async def open(cls, url: str, *, packing: bool = False) -> ChronStore:
        """Connect, migrate, wait for the writer lock (a second Chron waits here as a standby) and
        load the tree. With ``packing``, new rows' events are stored packed; rows of either form are
        read alike."""
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=4, server_settings=_SESSION,
                                             timeout=CONNECT_TIMEOUT_S)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot connect to PostgreSQL: {e}") from e
        store = cls(pool, packing=packing)
        try:
            await store.migrate()
            try:
                await store.become_writer(wait=False)
            except NotWriterError:
                log.warning("another Chron holds the writer lock: standing by until it is free")
                await store.become_writer(wait=True)
                log.warning("this Chron holds the writer lock now")
        except BaseException:
            await store.close()
            raise
        return store

    async def become_writer(self, *, wait: bool) -> None:
        """Take the writer lock on a connection of its own (waiting for it, or raising
        :class:`NotWriterError` at once) and reload the tree from the database: what it holds is
        the truth, whatever happened to a transaction whose commit was never confirmed."""
        await self._drop_writer()
        try:
            conn = await self._pool.acquire()
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot connect to PostgreSQL: {e}") from e
        try:
            if wait:
                await conn.execute("SELECT pg_advisory_lock($1)", _WRITER_LOCK)
            elif not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _WRITER_LOCK):
                raise NotWriterError("another Chron holds the writer lock")
        except BaseException as e:
            await self._release(conn)
            if isinstance(e, _DRIVER_ERRORS):
                raise StoreError(f"cannot take the writer lock: {e}") from e
            raise
        self._writer = conn
        await self.load_tree()

    async def wait_until_writer(self) -> None:
        """Block until this store holds the writer lock (a standby's wait); at once if it does."""
        async with self._append_lock:
            if self._writer is None:
                await self.become_writer(wait=True)

    async def _drop_writer(self) -> None:
        if self._writer is not None:
            conn, self._writer = self._writer, None
            await self._release(conn)

    async def _release(self, conn: asyncpg.Connection) -> None:
        """Give a connection back (a broken one is closed by the pool); never hangs or raises."""
        try:
            await asyncio.wait_for(self._pool.release(conn), CLOSE_WAIT_S)
        except Exception:
            conn.terminate()

    async def ping(self) -> list[str]:
        """Empty when PostgreSQL answers a query within :data:`CONNECT_TIMEOUT_S`, else why not."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                async with self._pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except (TimeoutError, *_DRIVER_ERRORS) as e:
            return [f"PostgreSQL: {type(e).__name__}: {e}"]
        return []

    async def close(self) -> None:
        """Close every connection: gracefully if PostgreSQL answers in time, else at once."""
        await self._drop_writer()
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_WAIT_S)
        except Exception:  # PostgreSQL gone, or a connection stuck: do not wait for it
            self._pool.terminate()

    async def load_tree(self) -> None:
        """Load the right edge of the stored tree; first store any subtree missing above the leaves
        (rows written before the Merkle log existed)."""
        try:
            async with self._pool.acquire() as conn:
                size = await conn.fetchval("SELECT coalesce(max(leaf_index) + 1, 0) FROM chron_events")
                stored = await conn.fetchval("SELECT count(*) FROM chron_tree")
                if stored != size - bin(size).count("1"):
                    await self._rebuild_nodes(conn, size)
                nodes = await self._fetch_nodes(conn, set(root_nodes(size)))
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot load the Merkle tree: {e}") from e
        self.frontier = Frontier.at(size, nodes)
        self._high = {}

    async def _rebuild_nodes(self, conn: asyncpg.Connection, size: int) -> None:
        log.warning("storing the Merkle subtrees of %d leaves", size)
        frontier = Frontier()
        batch: list[tuple[int, int, bytes]] = []
        async with conn.transaction():
            async for row in conn.cursor("SELECT leaf_hash FROM chron_events ORDER BY leaf_index"):
                batch += [n for n in frontier.append(bytes(row["leaf_hash"])) if n[0] > 0]
                if len(batch) >= 10_000:
                    await self._insert_missing_nodes(conn, batch)
                    batch = []
            await self._insert_missing_nodes(conn, batch)

    @staticmethod
    async def _insert_missing_nodes(conn: asyncpg.Connection, nodes: list[tuple[int, int, bytes]]) -> None:
        if nodes:
            levels, idxs, hashes = (list(c) for c in zip(*nodes, strict=True))
            await conn.execute(_INSERT_NODES, levels, idxs, hashes)

    @staticmethod
    async def _fetch_nodes(conn: asyncpg.Connection, wanted: Iterable[Node]) -> dict[Node, bytes]:
        wanted = list(wanted)
        leaves = [i for level, i in wanted if level == 0]
        inner = [(level, i) for level, i in wanted if level > 0]
        found: dict[Node, bytes] = {}
        if leaves:
            rows = await conn.fetch("SELECT leaf_index, leaf_hash FROM chron_events WHERE leaf_index = ANY($1::int8[])",
                                    leaves)
            found |= {(0, r["leaf_index"]): bytes(r["leaf_hash"]) for r in rows}
        if inner:
            rows = await conn.fetch(
                "SELECT level, idx, hash FROM chron_tree WHERE (level, idx) IN "
                "(SELECT * FROM unnest($1::int2[], $2::int8[]))", [n[0] for n in inner], [n[1] for n in inner])
            found |= {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
        missing = set(wanted) - found.keys()
        if missing:
            raise StoreError(f"the Merkle tree lacks {len(missing)} nodes, e.g. {sorted(missing)[:3]}")
        return found

    async def nodes(self, wanted: Iterable[Node]) -> dict[Node, bytes]:
        """The stored hashes of these complete subtrees (level 0: leaf hashes)."""
        try:
            async with self._pool.acquire() as conn:
                return await self._fetch_nodes(conn, wanted)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot read Merkle nodes: {e}") from e

    async def migrate(self) -> None:
        """Apply the SQL files in ``migrations/`` that have not run yet, in name order."""
        files = sorted(
            (f for f in resources.files("claiim_chron").joinpath("migrations").iterdir()
             if f.name.endswith(".sql")), key=lambda f: f.name,
        )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS chron_migrations "
                    "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["name"] for r in await conn.fetch("SELECT name FROM chron_migrations")}
                for f in files:
                    if f.name not in done:
                        await conn.execute(f.read_text())
                        await conn.execute("INSERT INTO chron_migrations (name) VALUES ($1)", f.name)
        except asyncpg.PostgresError as e:
            raise StoreError(f"migration failed: {e}") from e

    async def append(self, rows: list[Row], parked: list[Parked]) -> Appended:
        """Store rows as the next leaves, and parked messages, in one transaction.

        Rows already stored (same chron id or stream sequence: a redelivery) are skipped, so that a
        message is never two leaves. The in-memory tree advances only after the commit.

        A writer connection that broke (PostgreSQL restarted, the network dropped) is replaced on
        the next call: a new connection takes the writer lock again, or raises
        :class:`NotWriterError` if a standby took it meanwhile, and reloads the tree.
        """
        async with self._append_lock:  # the decision and control consumers share one writer
            if self._writer is None or not _usable(self._writer):
                await self.become_writer(wait=False)
            assert self._writer is not None
            try:
                return await self._append(self._writer, rows, parked)
            except StoreError as e:
                if _connection_lost(self._writer, e.__cause__):
                    log.warning("lost the writer connection (%s); the next batch reconnects", e.__cause__)
                    self.reconnects += 1
                    await self._drop_writer()
                raise

    async def _append(self, conn: asyncpg.Connection, rows: list[Row], parked: list[Parked]) -> Appended:
        """Store a batch. When every message of it lies past what is stored of its stream (the common
        case: new messages in stream order) no redelivery can be among them, and the unique chron id
        alone catches a replay: the rows go in without a query first, and a batch that hits the
        constraint is stored again the careful way (:meth:`_fresh`)."""
        try:
            if await self._past_stored(conn, rows, parked):
                try:
                    return await self._store(conn, rows, parked, checked=False)
                except asyncpg.UniqueViolationError:
                    pass  # a replayed chron id (or a replay within the batch): the careful way
            return await self._store(conn, rows, parked, checked=True)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"batch not stored: {e}") from e

    async def _past_stored(self, conn: asyncpg.Connection, rows: list[Row], parked: list[Parked]) -> bool:
        """Whether every message of the batch has a higher stream sequence than any stored or parked of
        its stream."""
        lowest: dict[str, int] = {}
        for stream, seq in _positions(rows, parked):
            lowest[stream] = min(seq, lowest.get(stream, seq))
        for stream, seq in lowest.items():
            if stream not in self._high:
                self._high[stream] = await conn.fetchval(_HIGH, stream)
            if seq <= self._high[stream]:
                return False
        return True

    async def _store(self, conn: asyncpg.Connection, rows: list[Row], parked: list[Parked], *,
                     checked: bool) -> Appended:
        async with conn.transaction():
            fresh, replayed = await self._fresh(conn, rows) if checked else (rows, [])
            parked = [*parked, *replayed]
            frontier = self.frontier.copy()
            first = frontier.size
            leaves: list[tuple[str, bytes]] = []
            full: list[tuple[object, ...]] = []
            nodes: list[tuple[int, int, bytes]] = []
            # Hashed (and packed) on the event loop, PACK_CHUNK rows at a time (one compressor call) with a yield
            # between: a thread would wait for the GIL after each compressor call while the loop is busy.
            hashed: list[tuple[bytes, bytes]] = []
            for start in range(0, len(fresh), PACK_CHUNK):
                if start:
                    await asyncio.sleep(0)
                hashed += _hashed(fresh[start:start + PACK_CHUNK], self._packing)
            for r, (h, stored) in zip(fresh, hashed, strict=True):
                full.append((*r._replace(event=stored), frontier.size, h))
                nodes += [n for n in frontier.append(h) if n[0] > 0]
                leaves.append((r.chron_id, h))
            if full:  # binary COPY: no per-value array encoding, as an INSERT of arrays has
                await conn.copy_records_to_table("chron_events", records=full, columns=_COLUMNS)
                if nodes:
                    await conn.copy_records_to_table("chron_tree", records=nodes, columns=_NODE_COLUMNS)
            for p in parked:
                await conn.execute(_PARK, p.stream, p.stream_seq, p.subject, p.data, p.error)
        self.frontier = frontier
        for stream, seq in _positions(rows, parked):
            if stream in self._high:
                self._high[stream] = max(seq, self._high[stream])
        return Appended(first, leaves, len(rows) - len(fresh) - len(replayed), replayed)

    @staticmethod
    async def _fresh(conn: asyncpg.Connection, rows: list[Row]) -> tuple[list[Row], list[Parked]]:
        """The rows not stored yet, and the replays among them: a message at a new stream position
        whose chron id is already a leaf (or earlier in the batch) is parked, never a second leaf."""
        if not rows:
            return [], []
        stored = await conn.fetch(_STORED, [r.chron_id for r in rows], [r.stream for r in rows],
                                  [r.stream_seq for r in rows])
        positions = {(r["stream"], r["stream_seq"]) for r in stored}
        ids = {r["chron_id"]: (r["leaf_index"], r["stream"], r["stream_seq"]) for r in stored if r["chron_id"]}
        fresh: list[Row] = []
        replayed: list[Parked] = []
        for r in rows:
            position = (r.stream, r.stream_seq)
            if position in positions:
                continue  # redelivered: stored (or parked) already
            positions.add(position)
            first = ids.get(r.chron_id)
            if first is not None:
                at = f"leaf {first[0]}" if first[0] is not None else "earlier in this batch"
                replayed.append(Parked(r.stream, r.stream_seq, r.subject, r.event,
                                       f"replayed: chron id {r.chron_id} is already {at} (stream {first[1]} "
                                       f"seq {first[2]})"))
                continue
            ids[r.chron_id] = (None, r.stream, r.stream_seq)
            fresh.append(r)
        return fresh, replayed

    async def leaves(self, start: int, stop: int) -> list[tuple[str, bytes]]:
        """``(chron_id, leaf hash)`` of leaves ``[start, stop)``."""
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch("SELECT chron_id, leaf_hash FROM chron_events WHERE leaf_index >= $1 "
                                        "AND leaf_index < $2 ORDER BY leaf_index", start, stop)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot read leaves: {e}") from e
        return [(r["chron_id"], bytes(r["leaf_hash"])) for r in rows]

    async def leaf(self, chron_id: str) -> tuple[str, int, bytes] | None:
        """The org, leaf index and bytes of a record."""
        try:
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow("SELECT org, leaf_index, event FROM chron_events WHERE chron_id = $1",
                                          chron_id)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot read a leaf: {e}") from e
        return None if row is None else (row["org"], row["leaf_index"], _event(chron_id, bytes(row["event"])))

    async def add_checkpoint(self, size: int, root: bytes, note: str) -> None:
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("INSERT INTO chron_checkpoints (size, root, note) VALUES ($1, $2, $3) "
                                   "ON CONFLICT DO NOTHING", size, root, note)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"checkpoint not stored: {e}") from e

    async def checkpoints(self, *, at_least: int = 0, limit: int | None = None,
                          newest_first: bool = False) -> list[StoredCheckpoint]:
        order = "DESC" if newest_first else "ASC"
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(f"SELECT size, root, note, signed_at FROM chron_checkpoints WHERE size >= $1 "
                                        f"ORDER BY size {order} LIMIT $2", at_least, limit)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot read checkpoints: {e}") from e
        return [StoredCheckpoint(r["size"], bytes(r["root"]), r["note"], r["signed_at"]) for r in rows]

    async def query(self, search: Search | None = None, **filters: Any) -> list[dict[str, Any]]:
        """The records ``search`` (or the :class:`Search` of ``filters``) finds, newest first, each with its
        event's original bytes."""
        sql, args = search_sql(search or Search(**filters))
        try:
            async with self._pool.acquire() as conn:
                rows = [dict(r) for r in await conn.fetch(sql, *args)]
        except _DRIVER_ERRORS as e:
            raise StoreError(f"query failed: {e}") from e
        for r in rows:
            r["event"] = _event(r["chron_id"], bytes(r["event"]))
        return rows

    async def tip(self) -> tuple[int, datetime | None]:
        """The number of leaves stored, and when the newest was stored (None: no leaf yet)."""
        try:
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow("SELECT leaf_index, recorded_at FROM chron_events "
                                          "ORDER BY leaf_index DESC LIMIT 1")
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot read the log's size: {e}") from e
        return (0, None) if row is None else (row["leaf_index"] + 1, row["recorded_at"])

    async def parked(self, *, unacknowledged: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        """Parked messages, newest first, each with its acknowledgement (``acked_by`` NULL if none)."""
        where = "WHERE a.parked_id IS NULL" if unacknowledged else ""
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT p.id, p.stream, p.stream_seq, p.subject, p.data, p.error, p.parked_at, a.acked_by, "
                    "a.reason AS ack_reason, a.acked_at FROM chron_parked p LEFT JOIN chron_parked_acks a "
                    f"ON a.parked_id = p.id {where} ORDER BY p.id DESC LIMIT $1", limit)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"query failed: {e}") from e
        return [dict(r) for r in rows]

    async def table_sizes(self) -> dict[str, int]:
        """Bytes of each of Chron's tables with its indexes and TOAST (``pg_total_relation_size``)."""
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch("SELECT c.relname, pg_total_relation_size(c.oid) AS size FROM pg_class c "
                                        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                                        "AND n.nspname = current_schema() AND c.relname LIKE 'chron\\_%'")
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot read the tables' sizes: {e}") from e
        return {f"table:{r['relname']}": int(r["size"]) for r in sorted(rows, key=lambda r: r["relname"])}

    async def unacknowledged_parked(self) -> int:
        try:
            async with self._pool.acquire() as conn:
                return int(await conn.fetchval(
                    "SELECT count(*) FROM chron_parked p WHERE NOT EXISTS "
                    "(SELECT 1 FROM chron_parked_acks a WHERE a.parked_id = p.id)"))
        except _DRIVER_ERRORS as e:
            raise StoreError(f"query failed: {e}") from e

    async def acknowledge_parked(self, ids: list[int], by: str, reason: str) -> list[int]:
        """Record ``by``'s acknowledgement of the parked messages ``ids`` (all of them when empty);
        returns the ids newly acknowledged."""
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    "INSERT INTO chron_parked_acks (parked_id, acked_by, reason) SELECT p.id, $2, $3 "
                    "FROM chron_parked p WHERE (cardinality($1::int8[]) = 0 OR p.id = ANY($1::int8[])) "
                    "ON CONFLICT DO NOTHING RETURNING parked_id", ids, by, reason)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot acknowledge parked messages: {e}") from e
        return sorted(r["parked_id"] for r in rows)

    # -- the archive (claiim_chron.archive) -------------------------------------------------------

    async def _run(self, what: str, call: str, sql: str, *args: Any) -> Any:
        """``conn.<call>(sql, *args)`` on a pooled connection; a driver error becomes "cannot <what>"."""
        try:
            async with self._pool.acquire() as conn:
                return await getattr(conn, call)(sql, *args)
        except _DRIVER_ERRORS as e:
            raise StoreError(f"cannot {what}: {e}") from e

    async def newest_archived(self) -> ArchivedSegment | None:
        row = await self._run("read the archive's state", "fetchrow", "SELECT leaf_from, leaf_to, name, streams "
                              "FROM chron_archive ORDER BY leaf_from DESC LIMIT 1")
        return None if row is None else _archived(row)

    async def segment_leaves(self, first: int, end: int) -> list[SegmentLeaf]:
        """Leaves ``[first, end)`` with their bytes, in index order: read and unpacked :data:`SEGMENT_CHUNK` at a
        time, so that a segment of 65,536 leaves does not hold up the event loop it shares for long."""
        leaves: list[SegmentLeaf] = []
        for lo in range(first, end, SEGMENT_CHUNK):
            rows = await self._run(f"read leaves {first}..{end - 1}", "fetch",
                                   "SELECT leaf_index, chron_id, kind, stream, stream_seq, subject, event, occurred_at "
                                   "FROM chron_events WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index",
                                   lo, min(end, lo + SEGMENT_CHUNK))
            leaves += _segment_leaves(rows)
        return leaves

    async def parked_between(self, after: dict[str, int], upto: dict[str, int]) -> list[Parked]:
        """Per stream, the parked messages above ``after`` and at or below ``upto`` (stream sequences)."""
        rows = await self._run(
            "read parked messages", "fetch",
            "SELECT p.stream, p.stream_seq, p.subject, p.data, p.error FROM chron_parked p "
            "JOIN unnest($1::text[], $2::int8[], $3::int8[]) AS b(stream, lo, hi) ON p.stream = b.stream "
            "AND p.stream_seq > b.lo AND p.stream_seq <= b.hi ORDER BY p.stream, p.stream_seq",
            list(upto), [after.get(s, 0) for s in upto], list(upto.values()))
        return [Parked(r["stream"], r["stream_seq"], r["subject"], bytes(r["data"]), r["error"]) for r in rows]

    async def covering_notes(self, first: int, end: int) -> list[str]:
        """The signed notes of sizes ``first + 1`` up to the first at or past ``end``."""
        rows = await self._run("read checkpoints", "fetch",
                               "SELECT note FROM chron_checkpoints WHERE size > $1 AND size <= "
                               "(SELECT min(size) FROM chron_checkpoints WHERE size >= $2) ORDER BY size", first, end)
        return [r["note"] for r in rows]

    async def add_archived(self, first: int, end: int, root: bytes, name: str, size: int, streams: dict[str, int],
                           newest: datetime) -> ArchivedSegment:
        """Record a segment written and checked; ``newest`` is when its newest leaf occurred."""
        await self._run(f"record archived leaves {first}..{end - 1}", "execute",
                        "INSERT INTO chron_archive (leaf_from, leaf_to, root, name, bytes, streams, newest) "
                        "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) ON CONFLICT DO NOTHING",
                        first, end, root, name, size, json.dumps(streams), newest)
        return ArchivedSegment(first, end, name, streams)

    async def archive_totals(self) -> tuple[int, int, int]:
        """Segments archived, the leaves they hold, and their bytes."""
        row = await self._run("read the archive's state", "fetchrow",
                              "SELECT count(*) AS n, coalesce(max(leaf_to), 0) AS leaves, "
                              "coalesce(sum(bytes), 0) AS bytes FROM chron_archive")
        return int(row["n"]), int(row["leaves"]), int(row["bytes"])

    async def first_seq_from(self, stream: str, leaf_index: int) -> int:
        """The lowest sequence of ``stream`` among leaves ``leaf_index`` and after; past the stream's highest
        stored sequence when there is none."""
        low = await self._run("read stream positions", "fetchval", "SELECT min(stream_seq) FROM chron_events "
                              "WHERE leaf_index >= $1 AND stream = $2", leaf_index, stream)
        if low is not None:
            return int(low)
        return int(await self._run("read stream positions", "fetchval", _HIGH, stream)) + 1

    async def archived_seq_before(self, stream: str, before: datetime) -> int:
        """The highest sequence of ``stream`` archived in a segment whose newest leaf occurred before ``before``
        (0: none)."""
        seq = await self._run("read the archive's state", "fetchval",
                              "SELECT (streams ->> $1)::int8 FROM chron_archive WHERE newest < $2 "
                              "ORDER BY leaf_from DESC LIMIT 1", stream, before)
        return int(seq or 0)


def _hashed(rows: list[Row], packing: bool) -> list[tuple[bytes, bytes]]:
    """Each row's leaf hash (over the event's own bytes) and the form the table holds: packed, or as it is."""
    events = [r.event for r in rows]
    return list(zip([leaf_hash(e) for e in events], pack_many(events) if packing else events, strict=True))


def _segment_leaves(rows: list[asyncpg.Record]) -> list[SegmentLeaf]:
    return [SegmentLeaf(r["leaf_index"], r["chron_id"], r["kind"], r["stream"], r["stream_seq"], r["subject"],
                        _event(r["chron_id"], bytes(r["event"])), r["occurred_at"]) for r in rows]


def _archived(row: asyncpg.Record) -> ArchivedSegment:
    return ArchivedSegment(row["leaf_from"], row["leaf_to"], row["name"],
                           {k: int(v) for k, v in json.loads(row["streams"]).items()})
