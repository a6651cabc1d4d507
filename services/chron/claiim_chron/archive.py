"""The archive: sealed segments of the log, kept outside PostgreSQL and JetStream, so that the decision
stream can be trimmed and Chron still rebuilt with every signed root.

A **segment** is the leaves ``[first, first + size)`` for a power-of-two ``size``
(``CLAIIM_ARCHIVE_SEGMENT``) and a ``first`` that is a multiple of it: a complete subtree of the tree,
whose hash Chron stored when it completed. Chron archives a segment once a signed checkpoint covers
it, as one gzip file ``segments/<first>-<end>.jsonl.gz`` (twelve digits each) of JSON lines:

- a header: ``format`` (:data:`FORMAT`), ``origin``, ``first``, ``end``, ``root`` (the subtree's hash,
  hex), ``streams`` (per stream, the highest sequence of a leaf or parked message up to this segment),
  ``checkpoints`` (the signed notes of sizes ``first + 1`` up to the first one at or past ``end``);
- one line per leaf, in index order: ``index``, ``chron_id``, ``kind``, ``stream``, ``seq``,
  ``subject``, ``event`` (the leaf's bytes as text: canonical JSON is UTF-8);
- one line per message Chron parked in the segment's stream range: ``parked`` with ``stream``,
  ``seq``, ``subject``, ``data`` (base64) and ``error``.

The archive is written to a folder or an S3-compatible bucket (``s3://BUCKET/PREFIX``). A segment is
read back and checked (every leaf hashed, the subtree's root compared) before Chron records it as
archived (table ``chron_archive``); only then may the decision stream lose it (:class:`Trimmer`).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from claiim_core.merkle import Frontier, leaf_hash
from claiim_core.names import Names
from nats.js import JetStreamContext

from claiim_chron.rows import Parked
from claiim_chron.store import ArchivedSegment, ChronStore, SegmentLeaf

log = logging.getLogger(__name__)
FORMAT = "claiim-archive-segment/1"
SEGMENTS = "segments/"
_NAME = re.compile(r"^segments/(\d{12})-(\d{12})\.jsonl\.gz$")
APPROVAL_KEEP_S = 8 * 24 * 3600.0
"""Approval subjects stay in the decision stream at least this long (an approval lives at most 7 days, and
the gate ends it with ``Nats-Expected-Last-Subject-Sequence`` on its subject)."""


class ArchiveError(RuntimeError):
    """The archive cannot be written or read, or holds something that is not a good segment."""


def subtree_root(events: Iterable[bytes]) -> bytes:
    """The Merkle tree hash of these leaves' bytes (RFC 6962)."""
    tree = Frontier()
    for event in events:
        tree.append(leaf_hash(event))
    return tree.root()


def segment_name(first: int, end: int) -> str:
    return f"{SEGMENTS}{first:012d}-{end:012d}.jsonl.gz"


# -- places --------------------------------------------------------------------------------------

class Place(Protocol):
    """Where segments are kept."""

    where: str

    async def put(self, name: str, data: bytes) -> None: ...

    async def get(self, name: str) -> bytes: ...

    async def names(self) -> list[str]:
        """The segments' names, in leaf order."""
        ...


class Folder:
    """A folder: each segment written to a temporary file, flushed to disk and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    async def put(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, name, data)

    def _put(self, name: str, data: bytes) -> None:
        path = self.root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as e:
            raise ArchiveError(f"cannot write {path}: {e}") from e

    async def get(self, name: str) -> bytes:
        try:
            return await asyncio.to_thread((self.root / name).read_bytes)
        except OSError as e:
            raise ArchiveError(f"cannot read {self.root / name}: {e}") from e

    async def names(self) -> list[str]:
        folder = self.root / SEGMENTS
        if not self.root.is_dir():
            raise ArchiveError(f"no archive at {self.root}: not a folder")
        found = sorted(f"{SEGMENTS}{p.name}" for p in folder.glob("*.jsonl.gz")) if folder.is_dir() else []
        return [n for n in found if _NAME.match(n)]


class Bucket:
    """An S3-compatible bucket (``s3://BUCKET/PREFIX``), through boto3 (``pip install 'claiim-server[s3]'``):
    credentials come from boto3's usual places (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile,
    an instance role); ``endpoint`` is the URL of a server other than AWS's."""

    def __init__(self, url: str, endpoint: str | None = None) -> None:
        try:
            import boto3  # type: ignore[import-untyped]
        except ImportError as e:
            raise ArchiveError("an S3 archive needs boto3: pip install 'claiim-server[s3]'") from e
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ArchiveError(f"{url!r} names no bucket: use s3://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.where = url
        self._client = boto3.client("s3", endpoint_url=endpoint)

    async def put(self, name: str, data: bytes) -> None:
        await self._call("write", name, lambda: self._client.put_object(Bucket=self.bucket, Key=self.prefix + name,
                                                                         Body=data))

    async def get(self, name: str) -> bytes:
        def read() -> bytes:
            return bytes(self._client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read())
        return await self._call("read", name, read)  # type: ignore[no-any-return]

    async def names(self) -> list[str]:
        def listing() -> list[str]:
            keys: list[str] = []
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                           Prefix=self.prefix + SEGMENTS)
            for page in pages:
                keys += [o["Key"].removeprefix(self.prefix) for o in page.get("Contents", [])]
            return sorted(k for k in keys if _NAME.match(k))
        return await self._call("list", SEGMENTS, listing)  # type: ignore[no-any-return]

    async def _call(self, what: str, name: str, call: Any) -> Any:
        try:
            return await asyncio.to_thread(call)
        except Exception as e:  # botocore's errors (network, credentials, missing key) have no common base
            raise ArchiveError(f"cannot {what} {self.where}/{name}: {type(e).__name__}: {e}") from e


def place_of(where: str, endpoint: str | None = None) -> Place:
    """The place ``where`` names: ``s3://BUCKET/PREFIX`` or a folder."""
    return Bucket(where, endpoint) if where.startswith("s3://") else Folder(Path(where))


# -- segments ------------------------------------------------------------------------------------

@dataclass
class Segment:
    first: int
    end: int
    root: bytes
    origin: str
    streams: dict[str, int]
    """Per stream, the highest sequence of a leaf or parked message up to the end of this segment."""
    newest: datetime
    """When the segment's newest leaf occurred."""
    checkpoints: list[str]
    leaves: list[SegmentLeaf]
    parked: list[Parked] = field(default_factory=list)
    name: str = ""
    size: int = 0
    """The bytes of its file (as read)."""

    def encode(self) -> bytes:
        header = {"format": FORMAT, "origin": self.origin, "first": self.first, "end": self.end,
                  "root": self.root.hex(), "streams": self.streams, "newest": self.newest.isoformat(),
                  "checkpoints": self.checkpoints}
        lines = [json.dumps(header, sort_keys=True)]
        lines += [json.dumps({"index": leaf.index, "chron_id": leaf.chron_id, "kind": leaf.kind, "stream": leaf.stream,
                              "seq": leaf.seq, "subject": leaf.subject, "event": leaf.event.decode()},
                             sort_keys=True, ensure_ascii=False) for leaf in self.leaves]
        lines += [json.dumps({"parked": {"stream": p.stream, "seq": p.stream_seq, "subject": p.subject,
                                         "data": base64.b64encode(p.data).decode(), "error": p.error}},
                             sort_keys=True) for p in self.parked]
        return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6, mtime=0)

    @classmethod
    def decode(cls, name: str, data: bytes) -> Segment:
        """Read a segment and check it: its header, its leaves' indexes, and that they hash to its root."""
        try:
            # split at "\n" only: an event's text may hold U+2028 and the like, which splitlines() splits at
            lines = gzip.decompress(data).decode().rstrip("\n").split("\n")
            header = json.loads(lines[0])
            if header.get("format") != FORMAT:
                raise ArchiveError(f"{name}: not a segment of this format ({header.get('format')!r}, "
                                   f"expected {FORMAT!r})")
            segment = cls(int(header["first"]), int(header["end"]), bytes.fromhex(header["root"]),
                          str(header["origin"]), {k: int(v) for k, v in header["streams"].items()},
                          datetime.fromisoformat(header["newest"]), [str(n) for n in header["checkpoints"]], [],
                          name=name, size=len(data))
            for line in lines[1:]:
                item = json.loads(line)
                if "parked" in item:
                    p = item["parked"]
                    segment.parked.append(Parked(p["stream"], int(p["seq"]), p["subject"],
                                                 base64.b64decode(p["data"]), p["error"]))
                else:
                    segment.leaves.append(SegmentLeaf(int(item["index"]), item["chron_id"], item["kind"],
                                                      item["stream"], int(item["seq"]), item["subject"],
                                                      item["event"].encode()))
        except ArchiveError:
            raise
        except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            raise ArchiveError(f"{name}: not a readable segment: {type(e).__name__}: {e}") from e
        segment.check(name)
        return segment

    def check(self, name: str) -> None:
        indexes = [leaf.index for leaf in self.leaves]
        if indexes != list(range(self.first, self.end)):
            raise ArchiveError(f"{name}: holds leaves {indexes[:1]}..{indexes[-1:]} ({len(indexes)}), not "
                               f"{self.first}..{self.end - 1}")
        computed = subtree_root(leaf.event for leaf in self.leaves)
        if computed != self.root:
            raise ArchiveError(f"{name}: its leaves hash to {computed.hex()}, not to its root {self.root.hex()}")


# -- archiving -----------------------------------------------------------------------------------

class Archiver:
    """Writes every sealed segment not yet archived: read from PostgreSQL, checked against the stored subtree,
    written, read back and checked again, then recorded in ``chron_archive``."""

    def __init__(self, store: ChronStore, place: Place, size: int, origin: str) -> None:
        if size < 16 or size & (size - 1):
            raise ValueError(f"a segment's size must be a power of two of at least 16, not {size}")
        self.store = store
        self.place = place
        self.size = size
        self.origin = origin
        self.archived: ArchivedSegment | None = None
        """The newest segment archived (None: none yet, or not read yet)."""
        self._read = False

    async def archived_end(self) -> int:
        """The first leaf not archived."""
        if not self._read:
            self.archived = await self.store.newest_archived()
            self._read = True
        return self.archived.end if self.archived else 0

    async def archive_sealed(self, signed_size: int) -> None:
        """Archive every whole segment below ``signed_size`` (the newest signed checkpoint's size) that is not
        archived yet."""
        first = await self.archived_end()
        while first + self.size <= signed_size:
            await self.archive(first, first + self.size)
            first += self.size

    async def archive(self, first: int, end: int) -> None:
        started = time.monotonic()
        leaves = await self.store.segment_leaves(first, end)
        if [leaf.index for leaf in leaves] != list(range(first, end)):
            raise ArchiveError(f"PostgreSQL does not hold leaves {first}..{end - 1} whole")
        level = (end - first).bit_length() - 1
        stored = (await self.store.nodes([(level, first >> level)])).get((level, first >> level))
        root = await asyncio.to_thread(subtree_root, (leaf.event for leaf in leaves))
        if stored != root:
            raise ArchiveError(f"leaves {first}..{end - 1} hash to {root.hex()}, but the stored subtree is "
                               f"{stored.hex() if stored else 'missing'}: run `claiim chron verify` before archiving")
        before = dict(self.archived.streams) if self.archived else {}
        streams = dict(before)
        for leaf in leaves:
            streams[leaf.stream] = max(streams.get(leaf.stream, 0), leaf.seq)
        parked = await self.store.parked_between(before, streams)
        for p in parked:
            streams[p.stream] = max(streams[p.stream], p.stream_seq)
        notes = await self.store.covering_notes(first, end)
        newest = max(leaf.occurred_at for leaf in leaves if leaf.occurred_at is not None)
        segment = Segment(first, end, root, self.origin, streams, newest, notes, leaves, parked)
        data = await asyncio.to_thread(segment.encode)
        name = segment_name(first, end)
        await self.place.put(name, data)
        back = await self.place.get(name)
        read = await asyncio.to_thread(Segment.decode, name, back)
        if read.root != root:
            raise ArchiveError(f"{self.place.where}/{name} read back does not hold the segment written")
        self.archived = await self.store.add_archived(first, end, root, name, len(data), streams, newest)
        log.info("archived leaves %d..%d to %s/%s (%d bytes, %.2f s)", first, end - 1, self.place.where, name,
                 len(data), time.monotonic() - started)


class Trimmer:
    """Trims the decision stream up to what is archived and older than ``keep`` seconds: decisions on their
    outcome subjects first; an approval's subject (its PENDING and the decision that ends it) only once it
    is older than :data:`APPROVAL_KEEP_S` as well. Never past the first message Chron has not stored (its
    durable consumer's ack floor, and the first decision leaf not archived). The control stream is never
    trimmed: it is the registry every service builds from its first event."""

    def __init__(self, js: JetStreamContext, names: Names, store: ChronStore, keep: float) -> None:
        self._js = js
        self._names = names
        self._store = store
        self.keep = keep
        self.trimmed: dict[str, int] = {}
        """Per subject filter, the stream sequence below which messages were purged."""

    async def trim(self, archived_end: int, now: float | None = None) -> None:
        """Purge what may go."""
        now = time.time() if now is None else now
        stream = self._names.decisions_stream
        info = await self._js.consumer_info(stream, self._names.chron_durable)
        bound = min(int(info.ack_floor.stream_seq if info.ack_floor else 0),
                    await self._store.first_seq_from(stream, archived_end) - 1)
        ns = self._names.namespace
        for subjects, keep in ((f"{ns}.decision.*.*.*", self.keep),
                               (f"{ns}.decision.*.*.approval.*", max(self.keep, APPROVAL_KEEP_S))):
            before = datetime.fromtimestamp(now - keep, tz=UTC)
            upto = min(bound, await self._store.archived_seq_before(stream, before))
            if upto <= 0 or upto + 1 <= self.trimmed.get(subjects, 0):
                continue
            await self._js.purge_stream(stream, seq=upto + 1, subject=subjects)
            self.trimmed[subjects] = upto + 1
            log.info("trimmed %s below seq %d (%s): archived and older than %.0f s", stream, upto + 1, subjects, keep)


async def read_archive(place: Place) -> list[Segment]:
    """Every segment of the archive, read and checked, in leaf order; raises :class:`ArchiveError` on a gap."""
    segments = []
    for name in await place.names():
        segments.append(await asyncio.to_thread(Segment.decode, name, await place.get(name)))
    at = 0
    for s in segments:
        if s.first != at:
            raise ArchiveError(f"{place.where} has no segment for leaves {at}..{s.first - 1}")
        at = s.end
    return segments

