"""Chron's PostgreSQL adapter: migrations, batch inserts in one transaction, queries.

Every driver error is translated into :class:`StoreError` so that callers never see asyncpg's.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg

from claiim_chron.rows import ROW_COLUMNS, Parked, Row

_MIGRATION_LOCK = 0x636C61696D  # "claim": one migrator at a time


class StoreError(RuntimeError):
    """PostgreSQL could not do what Chron asked."""


_TYPES = ("text", "text", "text", "int8", "text", "text", "text", "text", "text", "text", "text", "text",
          "text", "text", "text", "text", "text", "int8", "timestamptz", "bytea")
_ARRAYS = ", ".join(f"${i}::{t}[]" for i, t in enumerate(_TYPES, start=1))
_INSERT = (
    f"INSERT INTO chron_events ({', '.join(ROW_COLUMNS)}) "
    f"SELECT * FROM unnest({_ARRAYS}) ON CONFLICT DO NOTHING"
)
_PARK = (
    "INSERT INTO chron_parked (stream, stream_seq, subject, data, error) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
)


class ChronStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> ChronStore:
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        except (OSError, asyncpg.PostgresError) as e:
            raise StoreError(f"cannot connect to PostgreSQL: {e}") from e
        store = cls(pool)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self._pool.close()

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

    async def write_batch(self, rows: list[Row], parked: list[Parked]) -> None:
        """Store rows and parked messages in one transaction; duplicates are skipped."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if rows:
                    await conn.execute(_INSERT, *[list(col) for col in zip(*rows, strict=True)])
                for p in parked:
                    await conn.execute(_PARK, p.stream, p.stream_seq, p.subject, p.data, p.error)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StoreError(f"batch not stored: {e}") from e

    async def query(self, *, org: str | None = None, chron_id: str | None = None, agent_id: str | None = None,
                    outcome: str | None = None, since: datetime | None = None,
                    kind: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first. Filters combine with AND; ``org`` None means every org."""
        where: list[str] = []
        args: list[object] = []
        for column, value in (("org", org), ("chron_id", chron_id), ("agent_id", agent_id),
                              ("outcome", outcome), ("kind", kind)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if since is not None:
            args.append(since)
            where.append(f"occurred_at >= ${len(args)}")
        args.append(limit)
        sql = (f"SELECT * FROM chron_events {'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY id DESC LIMIT ${len(args)}")
        try:
            async with self._pool.acquire() as conn:
                return [dict(r) for r in await conn.fetch(sql, *args)]
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StoreError(f"query failed: {e}") from e

    async def parked(self) -> list[dict[str, Any]]:
        try:
            async with self._pool.acquire() as conn:
                return [dict(r) for r in await conn.fetch("SELECT * FROM chron_parked ORDER BY id")]
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            raise StoreError(f"query failed: {e}") from e
