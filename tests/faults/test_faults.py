"""The fault suite: a deployment of separate processes under load from agents using the SDK, one fault per
scenario, then every reply checked against Chron (tests/faults/audit.py says what fails a scenario).

Each scenario is bounded in time; its row goes to the table printed at the end of the run (and to
test-output/fault-scenarios.md). CLAIIM_FAULT_AGENTS and CLAIIM_FAULT_RATE change the load (default 16 agents,
200 checks/s in all).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from claiim_server.bootstrap import STOP_S
from nats.js.api import DiscardPolicy

from tests.conftest import needs_nats_auth
from tests.faults.audit import Result, audit
from tests.faults.conftest import RESULTS
from tests.faults.deployment import Deployment
from tests.faults.load import Load

pytestmark = [pytest.mark.faults, needs_nats_auth, pytest.mark.timeout(240)]
BEFORE_S = 3.0
"""Load before the fault."""
AFTER_S = 4.0
"""Load after the fault has ended."""
DRAIN_LIMIT_S = 60.0
"""A Chron that has not stored every decision this long after the fault has not healed."""
Fault = Callable[[Deployment], Awaitable[None]]


@contextlib.asynccontextmanager
async def deployed(root: Path, nats_nodes: int = 1, standby: bool = False) -> AsyncIterator[Deployment]:
    deployment = await Deployment.start(root, nats_nodes, standby)
    try:
        yield deployment
    finally:
        await asyncio.to_thread(deployment.stop_all)


@pytest.fixture
async def single(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(tmp_path / "d") as deployment:
        yield deployment


@pytest.fixture
async def with_standby(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(tmp_path / "d", standby=True) as deployment:
        yield deployment


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(tmp_path / "d", nats_nodes=3) as deployment:
        yield deployment


async def run(name: str, deployment: Deployment, fault: Fault, *, rate: float | None = None,
              after: float = AFTER_S, fault_s: float = 10.0) -> Result:
    """Load, the fault, load again; then wait for Chron to hold every decision and check every reply."""
    load = Load(deployment.settings.url, deployment.settings.namespace, deployment.tokens, rate=rate)
    load.start()
    await asyncio.sleep(BEFORE_S)
    began = time.monotonic()
    storing = asyncio.create_task(seconds_until_a_new_leaf(deployment, began, fault_s + DRAIN_LIMIT_S))
    await fault(deployment)
    healed = time.monotonic()
    waited = {r.chron_id for r in load.records if r.chron_id}
    catching_up = asyncio.create_task(seconds_until_stored(deployment, waited, healed))
    await asyncio.sleep(after)
    ended = time.monotonic()
    await load.stop()
    caught_up = await catching_up
    complete = await seconds_until_stored(deployment, {r.chron_id for r in load.records if r.chron_id},
                                          time.monotonic(), idle=True)
    verify = await asyncio.to_thread(deployment.verify)
    result = audit(name, load.records, await deployment.rows(), caught_up if complete is not None else None,
                   verify.returncode == 0, await deployment.leaves_dense())
    result.stores_again_s = await storing
    result.recorded_at_end = sum(bool(r.chron_id) for r in load.records if r.sent >= ended - 2)
    result.answers_again_s = min((r.answered for r in load.records if r.chron_id and r.sent >= began),
                                 default=float("nan")) - began
    if verify.returncode != 0:
        result.notes.append(verify.stdout[-2000:] + verify.stderr[-2000:])
    RESULTS.append(result)
    return result


async def seconds_until_a_new_leaf(deployment: Deployment, since: float, limit: float) -> float | None:
    """Seconds from ``since`` until Chron stores a leaf it did not hold at ``since`` (None: not within
    ``limit`` seconds)."""
    url = deployment.settings.require_database_url()
    first: int | None = None
    while time.monotonic() - since < limit:
        try:
            conn = await asyncpg.connect(url, timeout=2)
            try:
                size = int(await conn.fetchval("SELECT count(*) FROM chron_events"))
            finally:
                await conn.close()
        except Exception:  # PostgreSQL away, or going away under the query: ask again
            await asyncio.sleep(0.05)
            continue
        if first is None:
            first = size
        elif size > first:
            return time.monotonic() - since
        await asyncio.sleep(0.05)
    return None


async def seconds_until_stored(deployment: Deployment, chron_ids: set[str], since: float,
                               idle: bool = False) -> float | None:
    """Seconds from ``since`` until Chron holds every one of ``chron_ids`` (and, with ``idle``, has nothing
    pending on the decisions stream); None when that takes more than DRAIN_LIMIT_S."""
    nc = await deployment.connect()
    names = deployment.settings.names
    try:
        while time.monotonic() - since < DRAIN_LIMIT_S:
            try:
                stored = {r["chron_id"] for r in await deployment.rows()}
                if idle:
                    info = await nc.jetstream().consumer_info(names.decisions_stream, names.chron_durable, timeout=2)
                    stored = stored if info.num_pending == 0 and info.num_ack_pending == 0 else set()
            except Exception:  # a server still coming back: ask again
                await asyncio.sleep(0.2)
                continue
            if chron_ids <= stored and (stored or not chron_ids):
                return time.monotonic() - since
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
    return None


def passed(result: Result) -> None:
    problems = result.problems()
    assert not problems, f"{result.scenario}: {problems}"


# -- the scenarios -------------------------------------------------------------------------------


async def test_kill_9_of_chron_restarted_by_its_supervisor(single: Deployment) -> None:
    """Chron dies holding fetched, unacked decisions; its supervisor starts it again a second later: the new one
    gets them back within ack_wait (5 s) and stores everything."""
    async def fault(d: Deployment) -> None:
        d.signal("chron-1", signal.SIGKILL)
        await asyncio.sleep(1)
        await d.start_service("chron-1")

    passed(await run("kill -9 Chron, restarted", single, fault))


async def test_kill_9_of_a_gate_replica(single: Deployment) -> None:
    """One of two gates dies: checks it had taken are retried by the SDK (same request id) and answered by the
    other, from the first recorded decision if there was one; no caller sees an error."""
    async def fault(d: Deployment) -> None:
        d.signal("gate-1", signal.SIGKILL)

    result = await run("kill -9 of a gate replica", single, fault)
    passed(result)
    assert not result.errors and not result.not_delivered, result.row()


async def test_kill_9_of_one_nats_node_of_three(cluster: Deployment) -> None:
    """The node leading the decisions stream dies (the worst one to lose): the gate answers (DENY chron:unavailable
    while the other two elect a leader) and records again within the election time. An agent whose own connection
    was on the dead node may see its deadline pass while it reconnects and the stream elects: it gets
    GateUnavailableError in time (``passed`` checks that), never a late or another error."""
    async def fault(d: Deployment) -> None:
        nc = await d.connect()
        try:
            leader = (await nc.jetstream().stream_info(d.settings.names.decisions_stream)).cluster.leader  # type: ignore[union-attr]
        finally:
            await nc.close()
        d.kill_nats(next(i for i, n in enumerate(d.nodes) if n.name == leader))

    result = await run("kill -9 of 1 NATS node of 3 (stream leader)", cluster, fault, after=12)
    passed(result)
    assert set(result.errors) <= {"GateUnavailableError"}, result.row()
    assert result.pause_s < 15, result.row()


async def test_kill_9_of_the_only_nats_node_restarted_on_its_store(single: Deployment) -> None:
    """The only nats-server dies and comes back on the same store 2 s later: callers get answers or errors within
    their deadline, nothing acknowledged is lost, and Chron stores everything."""
    async def fault(d: Deployment) -> None:
        d.kill_nats(0)
        await asyncio.sleep(2)
        await asyncio.to_thread(d.start_nats, 0)

    passed(await run("kill -9 of the only NATS node, restarted", single, fault))


async def test_postgresql_stopped_for_5_s(single: Deployment) -> None:
    """PostgreSQL away for 5 s: the gate goes on answering (JetStream records), Chron stores what waited within
    5 s of PostgreSQL coming back."""
    async def fault(d: Deployment) -> None:
        await asyncio.to_thread(d.pg.stop)
        await asyncio.sleep(5)
        await asyncio.to_thread(d.pg.start)

    result = await run("PostgreSQL stopped 5 s", single, fault)
    passed(result)
    assert not result.errors and not result.unrecorded_deny, result.row()
    assert result.drain_s is not None and result.drain_s < 5, result.row()


async def test_postgresql_stopped_for_25_s(single: Deployment) -> None:
    """PostgreSQL away for 25 s, longer than every timer of Chron (its stall rule, the longest, is 10 s; a
    connection attempt gives up after 5 s), under a lighter load: Chron stores all that waited after PostgreSQL
    comes back, without a restart."""
    async def fault(d: Deployment) -> None:
        await asyncio.to_thread(d.pg.stop)
        await asyncio.sleep(25)
        await asyncio.to_thread(d.pg.start)

    result = await run("PostgreSQL stopped 25 s", single, fault, rate=100, fault_s=25)
    passed(result)
    assert not result.errors and not result.unrecorded_deny, result.row()


async def test_sigterm_to_everything(single: Deployment) -> None:
    """SIGTERM to every process at once (services, nats-server, PostgreSQL): every service exits 0 within 2 s;
    started again on the same stores, nothing acknowledged is lost."""
    stops: dict[str, tuple[int | None, float]] = {}

    async def fault(d: Deployment) -> None:
        names = list(d.processes)
        for name in names:
            d.signal(name, signal.SIGTERM)
        for node in d.nodes:
            assert node.process is not None
            node.process.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(d.pg.stop)
        for name in names:
            stops[name] = await asyncio.to_thread(d.stop_service, name, STOP_S + 3)
        for node in d.nodes:
            assert node.process is not None
            await asyncio.to_thread(node.process.stop)
        await asyncio.to_thread(d.pg.start)
        for i in range(len(d.nodes)):
            await asyncio.to_thread(d.start_nats, i)
        await asyncio.gather(*(d.start_service(name) for name in names))

    result = await run("SIGTERM to everything, started again", single, fault)
    slow = {name: stop for name, stop in stops.items() if stop[0] != 0 or stop[1] > STOP_S + 0.5}
    if slow:
        result.notes.append(f"stops not clean or not within {STOP_S + 0.5:g} s: {slow}")
    passed(result)


async def test_jetstream_refusing_writes_for_3_s(single: Deployment) -> None:
    """The decisions stream refuses new messages for 3 s (full, discarding new): the gate answers DENY
    chron:unavailable, never an unrecorded ALLOW; the SDK's retries with the same request id get recorded
    answers once writes are accepted again."""
    async def fault(d: Deployment) -> None:
        nc = await d.connect()
        js = nc.jetstream()
        stream = d.settings.names.decisions_stream
        try:
            info = await js.stream_info(stream)
            config = info.config
            await js.update_stream(config.evolve(max_msgs=info.state.messages, discard=DiscardPolicy.NEW))
            await asyncio.sleep(3)
            await js.update_stream(config)
        finally:
            await nc.close()

    result = await run("JetStream refusing writes 3 s", single, fault)
    passed(result)
    assert not result.errors, result.row()


async def test_chron_standby_takes_over_after_kill_9(with_standby: Deployment) -> None:
    """Two Chrons, one writing, one waiting on the writer lock: kill -9 of the writer; the standby takes the lock
    and stores everything (the drain time is the takeover time)."""
    async def fault(d: Deployment) -> None:
        d.signal("chron-1", signal.SIGKILL)

    result = await run("Chron standby takes over (kill -9 of the writer)", with_standby, fault)
    passed(result)
    assert "this Chron holds the writer lock now" in with_standby.log("chron-2")
