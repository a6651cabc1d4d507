"""A Chron search as a download: JSON Lines (each record as the Chron API returns it, its stored event
included) or CSV (one row per record, the event left out). The download runs the search the page shows (the
same filters, from the newest record back, whatever page the browser was on), paging through ``chron_list``
by leaf index, and stops after :data:`LIMIT` records: a narrower time window exports an older part of the
log. ``claiim chron export`` reads the whole database and has no such limit.

A failure after the first page aborts the download (the connection closes without the end of the chunked
body), so a browser marks it failed instead of saving a file that looks complete.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from claiim import AsyncAdmin, ClaiimError, InvalidRequestError
from claiim_core.schemas import ChronRecord

from claiim_admin.pages_chron import EXPORT_LIMIT, chron_filters, search_fields
from claiim_admin.web import admin_of

log = logging.getLogger("claiim.admin.export")
LIMIT = EXPORT_LIMIT
"""Records one download holds at most (the newest of those the search finds)."""
PAGE = 1000
"""Records asked of Chron per request."""
COLUMNS = ("chron_id", "kind", "occurred_at", "recorded_at", "org", "agent_id", "actor", "outcome", "action",
           "target", "anchor", "policy", "skill", "reason", "rule", "gate", "trace_id", "approval_id", "leaf_index",
           "stream", "stream_seq", "control_seq")
"""The CSV's columns: every field of a record but the stored event."""
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


class ExportInterrupted(Exception):
    """Chron stopped answering in the middle of a download (raised to abort the response)."""


def csv_cell(value: Any) -> str:
    """A value as CSV text. Text that a spreadsheet would run as a formula (agents choose their targets and
    context) gets a leading apostrophe, as OWASP advises for CSV injection; numbers and empty values stay."""
    text = "" if value is None else str(value)
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA) else text


def csv_lines(records: Iterable[ChronRecord], header: bool = False) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(COLUMNS)
    writer.writerows([csv_cell(getattr(r, c)) for c in COLUMNS] for r in records)
    return out.getvalue()


def jsonl_lines(records: Iterable[ChronRecord]) -> bytes:
    return b"".join(msgspec.json.encode(r) + b"\n" for r in records)


async def pages(admin: AsyncAdmin, filters: dict[str, Any], limit: int = LIMIT,
                size: int = PAGE) -> AsyncIterator[list[ChronRecord]]:
    """The records the search finds, newest first, a page at a time, ``limit`` in all at most."""
    before, left = None, limit
    while left > 0:
        page = await admin.chron_list(**filters, before=before, limit=min(size, left))
        if page:
            yield page
        if len(page) < min(size, left):
            return
        left -= len(page)
        before = page[-1].leaf_index


async def download(request: web.Request) -> web.StreamResponse:
    """``/search/export?format=jsonl|csv&`` + the search page's filters."""
    fmt = request.query.get("format", "jsonl")
    if fmt not in FORMATS:
        raise InvalidRequestError(f"format {fmt!r}: jsonl or csv")
    admin = admin_of(request)
    records = pages(admin, chron_filters(search_fields(request.query)))
    first: list[ChronRecord] = await anext(records, [])  # a refusal here is an error page, not a broken file
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = web.StreamResponse(headers={
        "Content-Type": FORMATS[fmt], "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="chron-{admin.org or "all"}-{stamp}.{fmt}"'})
    await response.prepare(request)
    def encode(page: list[ChronRecord], first: bool) -> bytes:
        return csv_lines(page, header=first).encode() if fmt == "csv" else jsonl_lines(page)

    await response.write(encode(first, True))
    try:
        async for page in records:
            await response.write(encode(page, False))
    except ClaiimError as e:
        log.warning("export of org %s aborted: %s", admin.org, e)
        raise ExportInterrupted(str(e)) from e
    await response.write_eof()
    return response
