"""Chron's NATS adapters: durable pull consumers that store batches, and the query API.

For each batch: decode every message (undecodable ones are parked), store rows and parked
messages in one PostgreSQL transaction, and only after the commit ack the messages. If the
transaction fails, the batch is nak'ed and comes back; inserts skip rows already stored
(unique stream sequence), so redelivery never writes twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import msgspec
from claiim_core.access import AccessError, authenticate, scope
from claiim_core.names import Names
from claiim_core.schemas import ChronQuery, ChronRecord, ChronResult
from claiim_runtime.follower import RegistryFollower
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from claiim_chron.rows import Parked, Row, to_row
from claiim_chron.store import ChronStore, StoreError

log = logging.getLogger(__name__)
_query = msgspec.json.Decoder(ChronQuery)
_encode = msgspec.json.Encoder().encode
RETRY_DELAY_S = 1.0


class ChronService:
    def __init__(self, nc: Client, js: JetStreamContext, names: Names, store: ChronStore,
                 follower: RegistryFollower, token_secret: bytes, operator_token: str, batch: int) -> None:
        self._nc = nc
        self._js = js
        self._names = names
        self.store = store
        self._follower = follower
        self._secret = token_secret
        self._operator_token = operator_token
        self._batch = batch
        self._tasks: list[asyncio.Task[None]] = []
        self._psubs: list[JetStreamContext.PullSubscription] = []
        self._sub: Subscription | None = None
        self._stopping = asyncio.Event()
        self.stored = 0
        self.parked = 0

    async def start(self) -> None:
        for kind, stream in (("decision", self._names.decisions_stream),
                             ("control", self._names.control_stream)):
            psub = await self._js.pull_subscribe(
                "", durable=self._names.chron_durable, stream=stream,
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                      max_ack_pending=50_000, ack_wait=30, max_deliver=-1),
            )
            self._psubs.append(psub)
            self._tasks.append(asyncio.create_task(self._consume(kind, stream, psub)))
        self._sub = await self._nc.subscribe(self._names.chron_query, queue=self._names.chron_queue,
                                             cb=self._on_query)

    async def stop(self) -> None:
        """Stop consuming. Cancelling is safe at any point: a batch whose transaction did not
        commit is redelivered, and one committed but not yet acked is skipped on redelivery."""
        self._stopping.set()
        if self._sub is not None:
            await self._sub.unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for psub in self._psubs:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _consume(self, kind: str, stream: str, psub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await psub.fetch(self._batch, timeout=1)
            except (NatsTimeout, TimeoutError):  # nats-py raises either when a fetch finds nothing
                continue
            except Exception as e:  # NATS down or reconnecting: wait and try again
                log.warning("chron fetch from %s failed: %r", stream, e)
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            await self._store(kind, stream, msgs)

    async def _store(self, kind: str, stream: str, msgs: list[Msg]) -> None:
        rows: list[Row] = []
        parked: list[Parked] = []
        for msg in msgs:
            item = to_row(kind, stream, msg.metadata.sequence.stream, msg.subject, msg.data)
            if isinstance(item, Parked):
                parked.append(item)
            else:
                rows.append(item)
        for p in parked:
            log.error("parked undecodable message %s seq %s: %s", p.stream, p.stream_seq, p.error)
        try:
            await self.store.write_batch(rows, parked)
        except StoreError as e:
            log.warning("%s; %d messages will be redelivered", e, len(msgs))
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=RETRY_DELAY_S)
            await asyncio.sleep(RETRY_DELAY_S)
            return
        for msg in msgs:
            await msg.ack()
        self.stored += len(rows)
        self.parked += len(parked)

    async def _on_query(self, msg: Msg) -> None:
        try:
            result = await self.query(msg.data)
        except Exception as e:
            log.exception("chron query failed")
            result = ChronResult(error=f"internal error: {type(e).__name__}")
        await msg.respond(_encode(result))

    async def query(self, data: bytes) -> ChronResult:
        try:
            q = _query.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            return ChronResult(error=f"malformed query: {e}")
        await self._follower.wait_caught_up()
        try:
            principal = authenticate(self._follower.registry, self._secret, self._operator_token, q.admin_token)
            org = None if principal.org is None and not q.org else scope(principal, q.org, write=False)
        except AccessError as e:
            return ChronResult(error=str(e))
        if q.op == "show" and not q.chron_id:
            return ChronResult(error="show needs a chron_id")
        try:
            since = datetime.fromisoformat(q.since) if q.since else None
        except ValueError:
            return ChronResult(error=f"since: not an ISO 8601 time: {q.since!r}")
        try:
            rows = await self.store.query(
                org=org, chron_id=q.chron_id, agent_id=q.agent_id, outcome=q.outcome, since=since,
                kind=q.kind, limit=1 if q.op == "show" else q.limit,
            )
        except StoreError as e:
            return ChronResult(error=str(e))
        return ChronResult(records=[_record(r) for r in rows])


def _record(r: dict[str, Any]) -> ChronRecord:
    fields = {k: v for k, v in r.items() if k in ChronRecord.__struct_fields__}
    fields["recorded_at"] = r["recorded_at"].isoformat()
    fields["occurred_at"] = r["occurred_at"].isoformat()
    fields["event"] = msgspec.Raw(bytes(r["event"]))
    return ChronRecord(**fields)
