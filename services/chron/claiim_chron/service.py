"""Chron's NATS adapters: durable pull consumers that store batches as Merkle leaves, the
checkpointer, the proofs feed, and the query API's subscription (:mod:`claiim_chron.queries`).

For each batch: decode and authenticate every message, store rows (as the next leaves) and
parked messages in one PostgreSQL transaction, and only after the commit ack the messages. A
decision must carry a valid MAC of a trusted gate key and sit on the subject its content names; a
control event must have been accepted by Chron's registry follower (signed by a trusted control
key, in its place in the stream). Anything else, and a stored chron id at a new stream position
(a replay), is parked, counted, logged at CRITICAL, and keeps Chron "not ready" until an operator
acknowledges it (``claiim chron parked``). If the transaction fails, the batch is nak'ed and
comes back; rows already stored are skipped, so redelivery never writes twice. After the commit a
task of its own publishes the new leaves (chron id and leaf hash) to the proofs feed
(``<ns>.chron.leaves``), beside ingest rather than in its way; the feed lets a verifier outside
the database name any leaf that was changed later.

At most every ``checkpoint_interval`` seconds while leaves arrive, and at shutdown, Chron signs
a checkpoint of the tree, after checking that the tree extends its previous checkpoint (it
refuses to sign a fork), stores it, publishes it (``<ns>.chron.checkpoint``) and mirrors it,
with the leaf batches, to ``checkpoint_dir`` when set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from pathlib import Path

import msgspec
from claiim_core.checkpoint import Checkpoint, CheckpointError, Signer
from claiim_core.codes import Code
from claiim_core.eventauth import AuthError, GateKeyring, open_decision
from claiim_core.events import ControlEvent
from claiim_core.ids import rfc3339
from claiim_core.merkle import consistency_ranges, nodes_for, proof_from
from claiim_core.names import Names
from claiim_core.proofs import LeafBatch
from claiim_core.schemas import ChronResult, DecisionEvent
from claiim_core.trust import TrustError, check_extends
from claiim_runtime.follower import RegistryFollower
from claiim_runtime.stopping import Deadline
from claiim_runtime.streams import Puller, durable_pull, hand_back, stream_seq
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from claiim_chron.archive import Archiver, Trimmer
from claiim_chron.metrics import ChronMetrics
from claiim_chron.queries import ChronQueries
from claiim_chron.rows import Check, Parked, Row, to_row
from claiim_chron.store import Appended, ChronStore, NotWriterError, StoreError

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
RETRY_DELAY_S = 1.0
ACK_WAIT_S = 5.0
"""How long JetStream waits for Chron's ack before it redelivers (to this Chron or a standby):
the longest delay before what a crashed Chron had fetched is stored. Batches that take longer
say they are in progress (every :data:`PROGRESS_S`)."""
PROGRESS_S = 2.0
STOP_S = 1.5
"""The longest a stop takes, NATS and PostgreSQL gone or not."""
PENDING_TIMEOUT_S = 2.0
WRONG_LAST_SEQUENCE = (10071, 10164)
"""JetStream's error codes for a ``Nats-Expected-Last-Subject-Sequence`` that does not hold."""
STALL_S = 10.0
"""Messages waiting and nothing stored for this long: Chron is not ready (its lag keeps growing)."""
UNFED_BATCHES = 100
"""Most stored batches kept in memory for the proofs feed."""
FEED_CHUNK = 1000
"""Most leaves in one proofs-feed message (about 100 KB)."""
ARCHIVE_EVERY_S = 60.0
"""Longest time between two looks at what to archive and trim."""


async def _in_progress(msgs: list[Msg], puller: Puller) -> None:
    """Tell JetStream, every few seconds, that a batch is still being stored, and the next one waiting
    (no redelivery)."""
    while True:
        await asyncio.sleep(PROGRESS_S)
        for msg in [*msgs, *puller.waiting()]:
            with contextlib.suppress(Exception):
                await msg.in_progress()


class ForkError(RuntimeError):
    """The tree does not extend the last signed checkpoint: Chron will not sign it."""


class ChronService:
    def __init__(self, nc: Client, js: JetStreamContext, names: Names, store: ChronStore,
                 follower: RegistryFollower, gate_keys: GateKeyring, token_secret: bytes, operator_token: str,
                 batch: int, signer: Signer, origin: str, checkpoint_interval: float = 5.0,
                 checkpoint_dir: Path | None = None, metrics: ChronMetrics | None = None,
                 archiver: Archiver | None = None, trimmer: Trimmer | None = None) -> None:
        """``follower`` must keep its rejections: Chron parks the control messages it refused. With an
        ``archiver``, sealed segments are archived after each checkpoint, and with a ``trimmer`` the
        decision stream is trimmed of what is archived."""
        self._nc = nc
        self._follower = follower
        self._gate_keys = gate_keys
        self._js = js
        self._names = names
        self.store = store
        self._batch = batch
        self._signer = signer
        self._verifier = signer.verifier
        self.origin = origin
        self._interval = checkpoint_interval
        self._dir = checkpoint_dir
        self.last_checkpoint: Checkpoint | None = None
        self.checkpoint_error: str | None = None
        self._unpublished: tuple[int, str] | None = None
        """The newest checkpoint (size, note) not yet on the proofs stream: published again until it is."""
        self._fed: int | None = None
        """The first leaf not in the proofs feed (None: not read from the stream yet)."""
        self._feed_seq = 0
        """The stream sequence of the feed's last message."""
        self._feed_lock = asyncio.Lock()
        self._unfed: list[Appended] = []
        """Batches stored since the feed last caught up: their leaves, without reading them back."""
        self._feed_wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pullers: list[Puller] = []
        self._sub: Subscription | None = None
        self._stopping = asyncio.Event()
        self._inflight: dict[int, list[Msg]] = {}
        """Each consumer's batch fetched and not yet acked (naked when Chron stops)."""
        self.metrics = metrics
        self._archiver = archiver
        self._trimmer = trimmer
        self._archive_wanted = asyncio.Event()
        self.archive_error: str | None = None
        """Why the last archiving or trimming failed (None: it did not)."""
        self._reconnects_seen = 0
        self.stored = 0
        self.last_stored = time.monotonic()
        """When a batch was last stored (or Chron started): how long a stall has lasted."""
        self.parked = 0
        self.rejected = 0
        """Messages parked since start as not authentic or replayed (a subset of ``parked``)."""
        self.queries = ChronQueries(store, follower, token_secret, operator_token, checkpoint_interval, self.pending,
                                    self.problems, self.stream_sizes)

    async def start(self) -> None:
        latest = await self.store.checkpoints(limit=1, newest_first=True)
        if latest:
            try:
                self.last_checkpoint = self._verifier.open(latest[0].note)
            except CheckpointError as e:  # the stored note is not ours: a verifier will say so too
                log.critical("the newest stored checkpoint does not verify with this key: %s", e)
                self.checkpoint_error = f"stored checkpoint {latest[0].size} does not verify: {e}"
        try:
            await self._feed()
        except Exception as e:  # NATS not ready yet: the feed catches up with the first batch stored
            log.warning("proofs feed not published yet: %r", e)
        for kind, stream in (("decision", self._names.decisions_stream),
                             ("control", self._names.control_stream)):
            puller = await durable_pull(self._nc, stream, self._names.chron_durable, ACK_WAIT_S)
            self._pullers.append(puller)
            self._tasks.append(asyncio.create_task(self._consume(kind, stream, puller)))
        self._tasks.append(asyncio.create_task(self._checkpoints()))
        self._tasks.append(asyncio.create_task(self._feeder()))
        if self._archiver is not None:
            self._tasks.append(asyncio.create_task(self._archiving()))
        self._sub = await self._nc.subscribe(self._names.chron_query, queue=self._names.chron_queue,
                                             cb=self._on_query)

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Stop consuming, hand back what was fetched and not stored (nak: another Chron gets it at
        once), then sign a last checkpoint; every step within ``deadline`` (default
        :data:`STOP_S`), errors logged, never raised. Cancelling is safe at any point: a batch whose
        transaction did not commit is redelivered, and one committed but not yet acked is skipped on
        redelivery."""
        deadline = deadline or Deadline(STOP_S)
        self._stopping.set()
        if self._sub is not None:
            await deadline.step("chron query subscription", self._sub.unsubscribe())
        fetched = [m for batch in self._inflight.values() for m in batch]  # before a cancelled batch drops them
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=deadline.left())
        for puller in self._pullers:
            await deadline.step("chron consumer", puller.unsubscribe())
            fetched += puller.take_rest()
        await hand_back(fetched, deadline.left())
        await deadline.step("proofs feed", self._feed())
        await deadline.step("last checkpoint", self.checkpoint())

    # -- checkpoints -------------------------------------------------------------------------

    async def _checkpoints(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
            if self._stopping.is_set():
                return
            try:
                await self.checkpoint()
            except Exception as e:  # keep trying: a verifier reports the staleness meanwhile
                log.error("checkpoint failed: %s", e)
                if self.metrics is not None:
                    self.metrics.checkpoint_errors.inc()

    async def _publish_checkpoint(self) -> None:
        """Publish the newest checkpoint on the proofs stream unless the stream has it (or a newer one)
        already. It is in PostgreSQL and the mirror already; when the stream cannot take it (no
        leader, NATS away) it is tried again every interval, so that a verifier reading the stream
        gets it even when no leaf follows. Appended only after the checkpoint the stream's leader
        says is last (``Nats-Expected-Last-Subject-Sequence``): no duplicate, whatever came back."""
        if self._unpublished is None:
            return
        size, note = self._unpublished
        try:
            try:
                last = await self._js.get_last_msg(self._names.proofs_stream, self._names.chron_checkpoint)
                if self._signed_size(last.data) >= size:
                    self._unpublished = None
                    return
                last_seq = last.seq or 0
            except NotFoundError:
                last_seq = 0
            await self._js.publish(self._names.chron_checkpoint, note.encode(), stream=self._names.proofs_stream,
                                   headers={"Nats-Expected-Last-Subject-Sequence": str(last_seq)})
        except Exception as e:
            log.error("checkpoint %d not published (trying again): %r", size, e)
            return
        if self._unpublished == (size, note):
            self._unpublished = None

    def _signed_size(self, note: bytes | None) -> int:
        """The tree size of a checkpoint note this Chron's key signed, 0 for anything else."""
        try:
            return self._verifier.open((note or b"").decode()).size
        except (CheckpointError, UnicodeDecodeError):
            return 0

    async def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint of the tree if it grew since the last one; None if it did not.

        Raises :class:`ForkError` (and signs nothing) when the tree does not extend the last
        signed checkpoint.
        """
        await self._publish_checkpoint()
        frontier = self.store.frontier.copy()
        last = self.last_checkpoint
        if frontier.size == 0 or (last is not None and last.size >= frontier.size):
            return None
        root = frontier.root()
        if last is not None:
            ranges = consistency_ranges(last.size, frontier.size)
            try:
                check_extends(last, frontier.size, root, proof_from(ranges, await self.store.nodes(nodes_for(ranges))))
            except TrustError as e:
                self.checkpoint_error = f"refusing to sign: {e}"
                log.critical(self.checkpoint_error)
                raise ForkError(self.checkpoint_error) from e
        checkpoint = Checkpoint(self.origin, frontier.size, root, rfc3339(time.time_ns() // 1000))
        note = self._signer.sign(checkpoint)
        await self.store.add_checkpoint(checkpoint.size, root, note)
        self.last_checkpoint = checkpoint
        self.checkpoint_error = None
        self._unpublished = (checkpoint.size, note)
        await self._publish_checkpoint()
        if self._dir is not None:
            await asyncio.to_thread(self._mirror_checkpoint, checkpoint.size, note)
        self._archive_wanted.set()
        return checkpoint

    def _mirror_checkpoint(self, size: int, note: str) -> None:
        assert self._dir is not None
        folder = self._dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{size:012d}.tmp"
        tmp.write_text(note)
        tmp.replace(folder / f"{size:012d}.txt")

    # -- the archive -------------------------------------------------------------------------

    async def _archiving(self) -> None:
        """Archive (and trim) after each checkpoint, and every :data:`ARCHIVE_EVERY_S` (an archived range
        becomes old enough to trim while no leaf comes); a failure is retried then, and reported meanwhile."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._archive_wanted.wait(), timeout=ARCHIVE_EVERY_S)
            self._archive_wanted.clear()
            if self._stopping.is_set():
                return
            try:
                await self.archive()
            except Exception as e:
                self.archive_error = f"archiving failed (retried every {ARCHIVE_EVERY_S:.0f} s): {e}"
                log.error(self.archive_error)

    async def archive(self) -> None:
        """Archive every segment the newest checkpoint covers, then trim what may go."""
        assert self._archiver is not None
        signed = self.last_checkpoint.size if self.last_checkpoint else 0
        await self._archiver.archive_sealed(signed)
        if self._trimmer is not None:
            await self._trimmer.trim(await self._archiver.archived_end())
        self.archive_error = None

    # -- the proofs feed ---------------------------------------------------------------------

    async def _feed_position(self) -> tuple[int, int]:
        """The first leaf index not yet in the proofs feed, and the stream sequence of the feed's
        last message (0 when the feed is empty), as the stream's leader has them."""
        try:
            last = await self._js.get_last_msg(self._names.proofs_stream, self._names.chron_leaves)
        except NotFoundError:
            return 0, 0
        return LeafBatch.decode(last.data or b"").end, last.seq or 0

    async def _feeder(self) -> None:
        """Publish the proofs feed beside ingest, not in its way: the consumers only say that leaves were
        stored; a failed publish is tried again a second later."""
        while not self._stopping.is_set():
            await self._feed_wanted.wait()
            self._feed_wanted.clear()
            try:
                await self._feed()
            except Exception as e:  # stored and acked; the feed catches up
                log.warning("proofs feed behind at leaf %s: %r", self._fed, e)
                await asyncio.sleep(RETRY_DELAY_S)
                self._feed_wanted.set()

    def _stored_leaves(self, start: int, stop: int) -> list[tuple[str, bytes]] | None:
        """Leaves ``[start, stop)`` from the batches stored since the feed caught up, if all are there."""
        self._unfed = [b for b in self._unfed if b.first + len(b.leaves) > start]
        leaves: list[tuple[str, bytes]] = []
        for b in self._unfed:
            at = start + len(leaves)
            if at >= stop or b.first > at:
                break
            leaves += b.leaves[at - b.first:stop - b.first]
        return leaves if start + len(leaves) == stop else None

    async def _feed(self) -> None:
        """Publish every committed leaf not yet in the feed, in order, in chunks.

        Each message is appended only if the feed's last message is the one this Chron appended
        before (``Nats-Expected-Last-Subject-Sequence``). When it is not (a publish whose PubAck was
        lost did land; a feed message did not survive a failover; another Chron published), the
        position is read again from the stream and the feed goes on from there, so it stays
        contiguous: no leaf is skipped and none is published twice."""
        async with self._feed_lock:
            if self._fed is None:
                self._fed, self._feed_seq = await self._feed_position()
            size = self.store.frontier.size
            while self._fed < size:
                stop = min(size, self._fed + FEED_CHUNK)
                leaves = self._stored_leaves(self._fed, stop) or await self.store.leaves(self._fed, stop)
                if not leaves:
                    return
                body = LeafBatch.of(self._fed, leaves).encode()
                try:
                    ack = await self._js.publish(
                        self._names.chron_leaves, body, stream=self._names.proofs_stream,
                        headers={"Nats-Expected-Last-Subject-Sequence": str(self._feed_seq)})
                except APIError as e:
                    if e.err_code not in WRONG_LAST_SEQUENCE:
                        raise
                    was = self._fed, self._feed_seq
                    self._fed, self._feed_seq = await self._feed_position()
                    if (self._fed, self._feed_seq) == was:  # the leader's view lags its own check: later
                        raise
                    log.info("the proofs feed is at leaf %d, not %d: going on from there", self._fed, was[0])
                    continue
                if self._dir is not None:
                    await asyncio.to_thread(self._mirror_leaves, body)
                self._fed += len(leaves)
                self._feed_seq = ack.seq

    def _mirror_leaves(self, line: bytes) -> None:
        assert self._dir is not None
        self._dir.mkdir(parents=True, exist_ok=True)
        with (self._dir / "leaves.jsonl").open("ab") as f:
            f.write(line + b"\n")

    async def _consume(self, kind: str, stream: str, puller: Puller) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await puller.fetch(self._batch, timeout=1)
            except Exception as e:  # NATS down or reconnecting: wait and try again
                log.warning("chron fetch from %s failed: %r", stream, e)
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            if not msgs:
                continue
            self._inflight[id(puller)] = msgs
            progress = asyncio.create_task(_in_progress(msgs, puller))
            started = time.perf_counter()
            try:
                stored = await self._store(kind, stream, msgs)
                if self.metrics is not None:
                    if stored:
                        self.metrics.batches.labels(stream).inc()
                        self.metrics.batch_seconds.observe(time.perf_counter() - started)
                    else:
                        self.metrics.failed_batches.labels(stream).inc()
            except NotWriterError:  # a standby took over while PostgreSQL was away: become the standby
                log.warning("another Chron holds the writer lock: standing by until it is free")
                await self._nak(msgs)
                await self.store.wait_until_writer()
                log.warning("this Chron holds the writer lock again and stores")
            except Exception:  # a bug must not end recording: what was not acked comes back
                log.exception("storing a batch from %s failed; it will be redelivered", stream)
                await self._nak(msgs)
            finally:
                progress.cancel()
                self._inflight.pop(id(puller), None)

    async def _store(self, kind: str, stream: str, msgs: list[Msg]) -> bool:
        """Store a batch and ack it; False when it was handed back for redelivery instead."""
        check: Check = self._check_decision
        if kind == "control":
            check = self._check_control
            try:  # the follower decides which control messages are authentic, in stream order
                await self._follower.wait_for(max(stream_seq(m) for m in msgs))
            except TimeoutError:
                log.warning("the registry follower is behind the control batch; %d messages will be redelivered",
                            len(msgs))
                await self._nak(msgs)
                return False
        rows: list[Row] = []
        parked: list[Parked] = []
        for msg in msgs:
            item = to_row(kind, stream, stream_seq(msg), msg.subject, msg.data, check)
            if isinstance(item, Parked):
                parked.append(item)
            else:
                rows.append(item)
        try:
            appended = await self.store.append(rows, parked)
        except StoreError as e:
            log.warning("%s; %d messages will be redelivered", e, len(msgs))
            await self._nak(msgs)
            return False
        for msg in msgs:
            await msg.ack()
        self.stored += len(appended.leaves)
        self.last_stored = time.monotonic()
        if self.metrics is not None:
            self.metrics.leaves.labels(stream).inc(len(appended.leaves))
        for p in [*parked, *appended.replayed]:
            self.parked += 1
            if self.metrics is not None:
                self.metrics.parked.labels(stream).inc()
            if p.error.startswith(("unauthenticated", "replayed")):
                self.rejected += 1
                log.critical("parked %s seq %s (%s), not a leaf: %s", p.stream, p.stream_seq, p.subject, p.error)
            else:
                log.error("parked undecodable message %s seq %s: %s", p.stream, p.stream_seq, p.error)
        if appended.duplicates:
            log.info("skipped %d messages already stored (redelivery)", appended.duplicates)
        if appended.leaves:
            self._unfed.append(appended)
            del self._unfed[:-UNFED_BATCHES]  # a feed long behind reads its leaves back from PostgreSQL
            self._feed_wanted.set()
        return True

    def _check_decision(self, event: DecisionEvent | ControlEvent, subject: str, seq: int) -> None:
        assert isinstance(event, DecisionEvent)
        open_decision(event, subject, seq, self._gate_keys, self._names)

    def _check_control(self, event: DecisionEvent | ControlEvent, subject: str, seq: int) -> None:
        why = self._follower.verdict(seq)
        if why is not None:
            raise AuthError(why)

    @staticmethod
    async def _nak(msgs: list[Msg]) -> None:
        for msg in msgs:
            with contextlib.suppress(Exception):
                await msg.nak(delay=RETRY_DELAY_S)
        await asyncio.sleep(RETRY_DELAY_S)

    async def problems(self) -> list[str]:
        """Why Chron is not fit to be trusted right now (empty: ready)."""
        found = []
        unacknowledged = await self.store.unacknowledged_parked()
        if unacknowledged:
            found.append(f"{unacknowledged} parked message(s) not acknowledged by an operator (claiim chron parked)")
        if self.checkpoint_error:
            found.append(self.checkpoint_error)
        if self.archive_error:
            found.append(self.archive_error)
        return found

    async def _on_query(self, msg: Msg) -> None:
        try:
            result = await self.queries.answer(msg.data)
        except Exception as e:
            log.exception("chron query failed")
            result = ChronResult(ok=False, code=Code.INTERNAL, error=f"internal error: {type(e).__name__}")
        await msg.respond(_encode(result))

    async def stream_sizes(self) -> dict[str, int]:
        """Bytes each of claiim's streams holds (one copy); a stream JetStream does not describe is left out."""
        n = self._names
        found = {}
        for stream in (n.decisions_stream, n.control_stream, n.proofs_stream, n.ocsf_stream):
            try:
                info = await asyncio.wait_for(self._js.stream_info(stream), PENDING_TIMEOUT_S)
                found[stream] = int(info.state.bytes or 0)
            except Exception as e:  # JetStream trouble: the status says what it can
                log.warning("stream %s's size cannot be read: %r", stream, e)
        return found

    async def pending_by_stream(self) -> dict[str, int]:
        """Per stream, the messages not yet stored (see :meth:`pending`); raises when JetStream does not answer."""
        found = {}
        for stream in (self._names.decisions_stream, self._names.control_stream):
            info = await self._js.consumer_info(stream, self._names.chron_durable, timeout=PENDING_TIMEOUT_S)
            found[stream] = (info.num_pending or 0) + (info.num_ack_pending or 0)
        return found

    async def refresh_metrics(self) -> None:
        """Bring the gauges up to date (before a scrape)."""
        m = self.metrics
        if m is None:
            return
        m.tree_size.set(self.store.frontier.size)
        last = self.last_checkpoint
        m.checkpoint_size.set(last.size if last else 0)
        m.checkpoint_age.set(time.time() - datetime.fromisoformat(last.time).timestamp() if last and last.time else -1)
        m.pg_reconnects.inc(self.store.reconnects - self._reconnects_seen)
        self._reconnects_seen = self.store.reconnects
        for stream, count in (await self.pending_by_stream()).items():
            m.pending.labels(stream).set(count)

    async def readiness(self) -> list[str]:
        """Why Chron cannot do its job now: PostgreSQL unreachable, the problems of :meth:`problems`,
        or a stall (messages waiting and nothing stored for :data:`STALL_S`)."""
        found = await self.store.ping()
        if found:
            return found
        found = await self.problems()
        stalled = time.monotonic() - self.last_stored
        if stalled > STALL_S:
            waiting = sum((await self.pending_by_stream()).values())
            if waiting:
                found.append(f"stalled: {waiting} messages wait and nothing was stored for {stalled:.0f} s")
        return found

    async def pending(self) -> int:
        """Messages of the decision and control streams not yet stored: those not yet delivered to
        Chron and those delivered but not yet acked (Chron acks after the commit); -1 when JetStream
        does not answer."""
        try:
            return sum((await self.pending_by_stream()).values())
        except Exception as e:  # nats-py raises timeouts, NotFoundError or APIError: the count is unknown
            log.warning("no consumer info for Chron's consumers: %r", e)
            return -1
