"""Chron's query API (``<ns>.chron.query``): records, proofs, checkpoints and status.

Every query carries an admin token. Records and inclusion proofs are those of the principal's
org (the operator's: every org, or the one it names). Checkpoints, consistency proofs and the
status describe the whole installation's log; any admin, auditor or the operator may read them,
as they reveal how many leaves there are and nothing of any record. Parked messages may be forged
events naming any org: only the operator lists and acknowledges them.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from claiim_core.access import AccessError, Principal, authenticate, scope
from claiim_core.codes import Code, Refusal
from claiim_core.merkle import consistency_ranges, inclusion_ranges, nodes_for, proof_from
from claiim_core.proofs import ConsistencyProof, InclusionProof
from claiim_core.schemas import (
    CheckpointInfo,
    ChronQuery,
    ChronRecord,
    ChronResult,
    ChronStatus,
    ParkedInfo,
    RecordFilter,
)
from claiim_runtime.follower import RegistryFollower

from claiim_chron.search import Search
from claiim_chron.store import ChronStore, StoredCheckpoint, StoreError

_query = msgspec.json.Decoder(ChronQuery)


class QueryError(Refusal):
    """The query cannot be answered as asked; the message says why."""


class ChronQueries:
    """Answers Chron queries from the store; ``pending`` counts the messages not yet stored."""

    def __init__(self, store: ChronStore, follower: RegistryFollower, token_secret: bytes, operator_token: str,
                 checkpoint_interval: float, pending: Callable[[], Awaitable[int]],
                 problems: Callable[[], Awaitable[list[str]]],
                 streams: Callable[[], Awaitable[dict[str, int]]]) -> None:
        self._problems = problems
        self._streams = streams
        self._store = store
        self._follower = follower
        self._secret = token_secret
        self._operator_token = operator_token
        self._interval = checkpoint_interval
        self._pending = pending

    async def answer(self, data: bytes) -> ChronResult:
        """The answer to one encoded :class:`ChronQuery`; refusals and failures set ``error``."""
        try:
            q = _query.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return ChronResult(ok=False, code=Code.INVALID, error=f"malformed query: {e}")
        await self._follower.wait_caught_up()
        try:
            principal = authenticate(self._follower.registry, self._secret, self._operator_token, q.admin_token)
            if q.op in ("parked", "ack-parked"):
                return await self._parked(q, principal)
            if principal.role == "anchor":
                return await self._run(*_anchored(q, principal))
            org = None if principal.org is None and not q.org else scope(principal, q.org, write=False)
            return await self._run(q, org)
        except Refusal as e:
            return ChronResult(ok=False, code=e.code, error=str(e))
        except StoreError as e:
            return ChronResult(ok=False, code=Code.UNAVAILABLE, error=str(e))

    async def _run(self, q: ChronQuery, org: str | None) -> ChronResult:
        if q.op in ("show", "prove") and not q.chron_id:
            raise QueryError(f"{q.op} needs a chron_id")
        if q.op == "prove":
            return await self._prove(q.chron_id or "", org)
        if q.op == "consistency":
            return await self._consistency(q.first, q.second)
        if q.op == "checkpoints":
            found = await self._store.checkpoints(limit=q.limit, newest_first=True)
            return ChronResult(checkpoints=[_checkpoint_info(c) for c in found])
        if q.op == "status":
            return ChronResult(status=await self._status())
        rows = await self._store.query(_search_of(q, org))
        return ChronResult(records=[_record(r) for r in rows])

    async def _parked(self, q: ChronQuery, principal: Principal) -> ChronResult:
        if principal.org is not None:
            raise AccessError(f"forbidden: only the operator reads and acknowledges parked messages, not the "
                              f"{principal}")
        if q.op == "ack-parked":
            if not q.reason:
                raise QueryError("acknowledging parked messages needs a reason")
            return ChronResult(acknowledged=await self._store.acknowledge_parked(q.ids, principal.name, q.reason))
        rows = await self._store.parked(unacknowledged=q.unacknowledged, limit=q.limit)
        return ChronResult(parked=[_parked_info(r) for r in rows])

    async def _prove(self, chron_id: str, org: str | None) -> ChronResult:
        found = await self._store.leaf(chron_id)
        if found is None or (org is not None and found[0] != org):
            raise QueryError(f"no record {chron_id}", Code.NOT_FOUND)
        _, index, data = found
        latest = await self._store.checkpoints(limit=1, newest_first=True)
        if not latest or latest[0].size <= index:
            raise QueryError(f"{chron_id} is leaf {index}, not yet in a signed checkpoint; the next one comes "
                             f"within {self._interval:g} s", Code.NOT_CHECKPOINTED)
        cp = latest[0]
        ranges = inclusion_ranges(index, cp.size)
        path = proof_from(ranges, await self._store.nodes(nodes_for(ranges)))
        proof = InclusionProof(chron_id=chron_id, leaf_index=index, leaf=base64.b64encode(data).decode(),
                               tree_size=cp.size, audit_path=[h.hex() for h in path], checkpoint=cp.note)
        return ChronResult(inclusion=msgspec.to_builtins(proof))

    async def _consistency(self, first: int, second: int) -> ChronResult:
        checkpoints = {c.size: c for c in await self._store.checkpoints()}
        if not checkpoints:
            raise QueryError("no checkpoint yet", Code.NOT_CHECKPOINTED)
        second = second or max(checkpoints)
        missing = [s for s in (first, second) if s not in checkpoints]
        if missing:
            raise QueryError(f"no checkpoint of tree size {missing[0]} (see `claiim chron checkpoints`)",
                             Code.NOT_FOUND)
        if first > second:
            raise QueryError(f"the first tree ({first}) must not be larger than the second ({second})")
        ranges = consistency_ranges(first, second)
        proof = proof_from(ranges, await self._store.nodes(nodes_for(ranges)))
        bundle = ConsistencyProof(first=checkpoints[first].note, second=checkpoints[second].note,
                                  proof=[h.hex() for h in proof])
        return ChronResult(consistency=msgspec.to_builtins(bundle))

    async def _status(self) -> ChronStatus:
        # Pending first: a message counted as stored here is then already in the tree size read next.
        pending = await self._pending()
        size, recorded_at = await self._store.tip()
        latest = await self._store.checkpoints(limit=1, newest_first=True)
        segments, archived, archived_bytes = await self._store.archive_totals()
        return ChronStatus(tree_size=size, last_recorded_at=recorded_at.isoformat() if recorded_at else "",
                           checkpoint_size=latest[0].size if latest else 0,
                           checkpoint_signed_at=latest[0].signed_at.isoformat() if latest else "", pending=pending,
                           parked=await self._store.unacknowledged_parked(), problems=await self._problems(),
                           disk={**await self._streams(), **await self._store.table_sizes()},
                           archived=archived, archived_segments=segments, archived_bytes=archived_bytes)


def _anchored(q: ChronQuery, principal: Principal) -> tuple[ChronQuery, str]:
    """An anchor's query: the records of the agents it anchors (their decisions name it), in its org."""
    if q.op not in ("list", "show", "checkpoints", "consistency", "status"):
        raise AccessError(f"forbidden: {principal} reads its agents' records (list, show), nothing else")
    if q.org and q.org != principal.org:
        raise AccessError(f"forbidden: {principal} cannot act in org {q.org}")
    assert principal.org is not None
    return msgspec.structs.replace(q, anchor=principal.name, kind="decision"), principal.org


def _search_of(q: ChronQuery, org: str | None) -> Search:
    """The search a ``list`` or ``show`` query asks for, within ``org``: its :class:`RecordFilter`
    fields, the times parsed."""
    fields = {name: getattr(q, name) for name in RecordFilter.__struct_fields__}
    fields |= {"since": parse_time("since", q.since), "until": parse_time("until", q.until),
               "limit": 1 if q.op == "show" else q.limit}
    return Search(org=org, **fields)


def parse_time(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 time; one without an offset is UTC, whatever the server's time zone."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{name}: not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _checkpoint_info(c: StoredCheckpoint) -> CheckpointInfo:
    return CheckpointInfo(size=c.size, root=c.root.hex(), signed_at=c.signed_at.isoformat(), note=c.note)


def _parked_info(r: dict[str, Any]) -> ParkedInfo:
    return ParkedInfo(id=r["id"], stream=r["stream"], stream_seq=r["stream_seq"], subject=r["subject"],
                      error=r["error"], parked_at=r["parked_at"].isoformat(),
                      data=bytes(r["data"])[:4096].decode("utf-8", "replace"), acked_by=r["acked_by"] or "",
                      ack_reason=r["ack_reason"] or "", acked_at=r["acked_at"].isoformat() if r["acked_at"] else "")


def _record(r: dict[str, Any]) -> ChronRecord:
    fields = {k: v for k, v in r.items() if k in ChronRecord.__struct_fields__}
    fields["recorded_at"] = r["recorded_at"].isoformat()
    fields["occurred_at"] = r["occurred_at"].isoformat()
    fields["event"] = msgspec.Raw(bytes(r["event"]))
    return ChronRecord(**fields)
