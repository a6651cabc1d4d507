"""Chron's record search and status over NATS, with the records in PostgreSQL.

Decisions are published straight to the decision stream (as a gate would), so that every field
of them is chosen here: two orgs, demo and acme, share agent names, anchors and actions, so that
a search leaking across orgs would show.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from claiim import Admin, AdminError, AsyncAdmin
from claiim_core.schemas import ChronRecord, ChronStatus, DecisionEvent
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import start_services

from tests.conftest import Stack, connect_as, sealed, with_auth
from tests.integration.test_chron import wait_count

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Spec:
    """One decision to publish; the n-th of an org occurred n minutes after T0."""

    agent: str
    anchor: str
    action: str
    outcome: str = "ALLOW"


DEMO = [
    Spec("deploy-bot", "s.emp1", "deploy:staging"),
    Spec("deploy-bot", "s.emp1", "deploy:production", "DENY"),
    Spec("review-bot", "j.smith", "pr:comment"),
    Spec("review-bot", "j.smith", "pr:merge", "DENY"),
    Spec("deploy-bot", "s.emp1", "deploy_x:canary"),
    Spec("deploy-bot", "s.emp1", "deployAx:canary"),  # what deploy_x would match if _ were a wildcard
    Spec("deploy-bot", "s.emp1", "deploy%:odd"),
    Spec("ops-bot", "k.lee", "deploy:staging"),
    Spec("ops-bot", "k.lee", "db:read"),
    Spec("ops-bot", "k.lee", "deploy:staging", "DENY"),
    Spec("deploy-bot", "s.emp1", "deploy:staging"),
    Spec("review-bot", "j.smith", "pr:comment"),
]
ACME = [
    Spec("deploy-bot", "s.emp1", "deploy:staging"),
    Spec("ops-bot", "k.lee", "deploy:production", "DENY"),
    Spec("deploy-bot", "s.emp1", "deploy_x:canary"),
]


def at(i: int) -> str:
    return (T0 + timedelta(minutes=i)).isoformat()


def decision(org: str, i: int, spec: Spec) -> DecisionEvent:
    return DecisionEvent(
        chron_id=f"chr_{org}{i:022d}", decided_at=(T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        outcome=spec.outcome, reason="test", rule="", org=org, agent_id=spec.agent, anchor=spec.anchor,
        action=spec.action, target="t", context={}, request_id=None, policy="p-v1", skill="s-v1", gate="test",
        control_seq=1,
    )


@dataclass
class Log:
    stack: Stack
    oscar_token: str
    """Admin of acme."""
    oscar: AsyncAdmin

    def as_admin(self, token: str, org: str | None = None) -> AsyncAdmin:
        s = self.stack.settings
        return AsyncAdmin(s.url, token, org=org, namespace=s.namespace)

    @property
    def demo(self) -> AsyncAdmin:
        """The operator, acting in demo."""
        return self.stack.admin

    async def ids(self, admin: AsyncAdmin | None = None, **filters: Any) -> list[str]:
        records = await (admin or self.demo).chron_list(kind="decision", limit=1000, **filters)
        return [r.chron_id for r in records]


def expected(org: str, specs: list[Spec], keep: Callable[[int, Spec], bool]) -> list[str]:
    """The chron ids of the decisions ``keep`` selects, newest first."""
    return [f"chr_{org}{i:022d}" for i in reversed(range(len(specs))) if keep(i, specs[i])]


async def publish(settings: Settings, org: str, specs: list[Spec]) -> None:
    nc = await connect_as(settings, "gate")
    try:
        js = nc.jetstream()
        for i, spec in enumerate(specs):
            await js.publish(settings.names.decision_subject(org, spec.agent, spec.outcome),
                             sealed(settings, decision(org, i, spec)))
    finally:
        await nc.close()


@pytest.fixture
async def log(stack: Stack) -> AsyncIterator[Log]:
    s = stack.settings
    await stack.admin.create_org("acme")
    in_acme = AsyncAdmin(s.url, s.require_admin_token(), org="acme", namespace=s.namespace)
    try:
        oscar_token = await in_acme.enrol_admin("oscar")
    finally:
        await in_acme.close()
    await publish(s, "demo", DEMO)
    await publish(s, "acme", ACME)
    await wait_count(s.require_database_url(), len(DEMO) + len(ACME))
    oscar = AsyncAdmin(s.url, oscar_token, namespace=s.namespace)
    try:
        yield Log(stack, oscar_token, oscar)
    finally:
        await oscar.close()


FILTERS: list[tuple[str, dict[str, Any], Callable[[int, Spec], bool]]] = [
    ("agent", {"agent_id": "ops-bot"}, lambda _, s: s.agent == "ops-bot"),
    ("anchor", {"anchor": "j.smith"}, lambda _, s: s.anchor == "j.smith"),
    ("exact action", {"action": "deploy:staging"}, lambda _, s: s.action == "deploy:staging"),
    ("action prefix", {"action": "deploy:*"}, lambda _, s: s.action.startswith("deploy:")),
    ("shorter prefix", {"action": "deploy*"}, lambda _, s: s.action.startswith("deploy")),
    ("outcome", {"outcome": "DENY"}, lambda _, s: s.outcome == "DENY"),
    ("agent and outcome", {"agent_id": "deploy-bot", "outcome": "ALLOW"},
     lambda _, s: s.agent == "deploy-bot" and s.outcome == "ALLOW"),
    ("anchor and prefix", {"anchor": "k.lee", "action": "deploy:*"},
     lambda _, s: s.anchor == "k.lee" and s.action.startswith("deploy:")),
    ("nothing matches", {"action": "nothing:*"}, lambda _, s: False),
]


@pytest.mark.parametrize(("filters", "keep"), [(f, k) for _, f, k in FILTERS], ids=[n for n, _, _ in FILTERS])
async def test_each_filter_returns_exactly_the_matching_records(
        log: Log, filters: dict[str, Any], keep: Callable[[int, Spec], bool]) -> None:
    """A filter returns every decision of the org that matches it and no other, newest first."""
    assert await log.ids(**filters) == expected("demo", DEMO, keep)


async def test_percent_and_underscore_in_an_action_are_plain_characters(log: Log) -> None:
    """``_`` and ``%`` in an action prefix or an exact action match only themselves, never any character."""
    only = {i: f"chr_demo{i:022d}" for i in range(len(DEMO))}
    assert await log.ids(action="deploy_*") == [only[4]]
    assert await log.ids(action="deploy_x:canary") == [only[4]]
    assert await log.ids(action="deploy%*") == [only[6]]
    assert await log.ids(action="deploy%:odd") == [only[6]]
    assert await log.ids(action="%*") == []
    assert await log.ids(action="_*") == []
    assert await log.ids(action="deploy_") == []


async def test_before_pages_through_every_record_once_in_order(log: Log) -> None:
    """Following ``before`` from page to page yields all the records, newest first, each once and none skipped."""
    for filters in ({}, {"action": "deploy*"}):
        everything = await log.demo.chron_list(limit=1000, **filters)
        walked: list[ChronRecord] = []
        page = await log.demo.chron_list(limit=4, **filters)
        while page:
            walked += page
            page = await log.demo.chron_list(limit=4, before=page[-1].leaf_index, **filters)
        assert [r.chron_id for r in walked] == [r.chron_id for r in everything]
        indexes = [r.leaf_index for r in walked]
        assert indexes == sorted(set(indexes), reverse=True)


async def test_after_returns_the_page_just_newer_still_newest_first(log: Log) -> None:
    """``after`` gives the ``limit`` records just newer than the cursor, newest first; with ``before`` a range."""
    everything = await log.demo.chron_list(kind="decision", limit=1000)
    ids = [r.chron_id for r in everything]
    for k in (len(ids) - 1, 5, 2):
        newer = await log.demo.chron_list(kind="decision", limit=3, after=everything[k].leaf_index)
        assert [r.chron_id for r in newer] == ids[max(0, k - 3):k]
    assert await log.demo.chron_list(after=everything[0].leaf_index) == []
    between = await log.demo.chron_list(kind="decision", after=everything[6].leaf_index,
                                        before=everything[1].leaf_index)
    assert [r.chron_id for r in between] == ids[2:6]


async def test_since_is_inclusive_and_until_exclusive(log: Log) -> None:
    """``since`` keeps records that occurred at or after it, ``until`` those before it; no offset means UTC."""
    def between(lo: int, hi: int) -> list[str]:
        return expected("demo", DEMO, lambda i, _: lo <= i < hi)

    assert await log.ids(since=at(3), until=at(7)) == between(3, 7)
    assert await log.ids(since=at(9)) == between(9, 99)
    assert await log.ids(until=at(2)) == between(0, 2)
    assert await log.ids(since="2026-11-25T10:03:00", until="2026-11-25T10:07:00") == between(3, 7)
    assert await log.ids(since=at(7), until=at(7)) == []
    assert await log.ids(since=at(2), action="pr:*") == expected(
        "demo", DEMO, lambda i, s: i >= 2 and s.action.startswith("pr:"))


@pytest.mark.parametrize(("filters", "error"), [
    ({"since": "yesterday"}, "since: not an ISO 8601 time: 'yesterday'"),
    ({"until": "2026-13-01"}, "until: not an ISO 8601 time: '2026-13-01'"),
    ({"before": -1}, "malformed query: Expected `int` >= 0 - at `$.before`"),
    ({"after": -5}, "malformed query: Expected `int` >= 0 - at `$.after`"),
])
async def test_bad_bounds_are_refused_with_a_clear_error(stack: Stack, filters: dict[str, Any], error: str) -> None:
    """A time that does not parse, or a negative cursor, is refused with an error naming the field."""
    with pytest.raises(AdminError) as info:
        await stack.admin.chron_list(**filters)
    assert str(info.value) == error


async def test_every_new_filter_stays_within_the_org(log: Log) -> None:
    """Another org's admin finds only its own org's records with every filter, and may not name demo."""
    acme = {f"chr_acme{i:022d}" for i in range(len(ACME))}
    cases: list[tuple[dict[str, Any], Callable[[int, Spec], bool]]] = [
        ({"anchor": "s.emp1"}, lambda _, s: s.anchor == "s.emp1"),
        ({"action": "deploy:*"}, lambda _, s: s.action.startswith("deploy:")),
        ({"action": "deploy_x:canary"}, lambda _, s: s.action == "deploy_x:canary"),
        ({"since": at(1)}, lambda i, _: i >= 1),
        ({"until": at(2)}, lambda i, _: i < 2),
        ({"before": 10**9}, lambda _, s: True),
        ({"after": 0}, lambda _, s: True),
    ]
    for filters, keep in cases:
        assert await log.ids(log.oscar, **filters) == expected("acme", ACME, keep), filters
        assert not acme & set(await log.ids(**filters)), filters
    oscar_in_demo = log.as_admin(log.oscar_token, org="demo")
    try:
        with pytest.raises(AdminError, match="forbidden: admin oscar of org acme cannot act in org demo"):
            await oscar_in_demo.chron_list(anchor="s.emp1", action="deploy:*", until=at(99), before=10**9)
    finally:
        await oscar_in_demo.close()


async def settled(admin: AsyncAdmin) -> ChronStatus:
    """The status once Chron has stored every message of its streams."""
    for _ in range(200):
        status = await admin.chron_status()
        if status.pending == 0:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"Chron never caught up: {status}")


async def test_status_reports_the_log_and_its_newest_checkpoint(log: Log) -> None:
    """Once nothing is pending, the tree size is the number of records, and a checkpoint's size and time show."""
    status = await settled(log.demo)
    conn = await asyncpg.connect(log.stack.settings.require_database_url())
    try:
        count, newest = await conn.fetchrow("SELECT count(*), max(recorded_at) FROM chron_events")
    finally:
        await conn.close()
    every_org = log.as_admin(log.stack.settings.require_admin_token(), org="")
    try:
        assert status.tree_size == count == len(await every_org.chron_list(limit=10_000))
    finally:
        await every_org.close()
    assert datetime.fromisoformat(status.last_recorded_at) == newest
    assert log.stack.running.chron is not None
    await log.stack.running.chron.checkpoint()
    signed = await log.demo.chron_status()
    assert signed.checkpoint_size == signed.tree_size == status.tree_size
    assert datetime.fromisoformat(signed.checkpoint_signed_at) <= datetime.now(UTC)


async def test_pending_counts_the_messages_chron_has_not_stored(stack_settings: Settings) -> None:
    """While PostgreSQL refuses the rows, pending counts the unstored messages; it falls to 0 once they are stored."""
    s = stack_settings
    running = await start_services(s, with_auth(s, "chron"))
    operator = AsyncAdmin(s.url, s.require_admin_token(), org="", namespace=s.namespace)
    conn = await asyncpg.connect(s.require_database_url())
    try:
        empty = await operator.chron_status()
        assert (empty.tree_size, empty.last_recorded_at, empty.checkpoint_size, empty.checkpoint_signed_at,
                empty.pending) == (0, "", 0, "", 0)
        await conn.execute("ALTER TABLE chron_events ADD CONSTRAINT no_writes CHECK (false) NOT VALID")
        await publish(s, "demo", DEMO[:5])
        await asyncio.sleep(1.0)  # fetched and refused at least once
        held = await operator.chron_status()
        assert (held.pending, held.tree_size) == (5, 0)
        await conn.execute("ALTER TABLE chron_events DROP CONSTRAINT no_writes")
        stored = await settled(operator)
        assert stored.tree_size == 5 and stored.last_recorded_at
    finally:
        await conn.close()
        await operator.close()
        await running.stop()


async def test_an_auditor_an_admin_and_the_operator_read_the_status(stack: Stack) -> None:
    """Status is installation-wide health: every valid admin token may read it, an invalid one may not."""
    s = stack.settings
    audrey = await stack.admin.enrol_admin("audrey", "auditor")
    alice = await stack.admin.enrol_admin("alice")
    statuses = [await settled(stack.admin)]
    alice_admin = AsyncAdmin(s.url, alice, namespace=s.namespace)
    try:
        statuses.append(await alice_admin.chron_status())
    finally:
        await alice_admin.close()

    def as_audrey() -> ChronStatus:  # the synchronous client runs its own event loop: in a thread
        admin = Admin(s.url, audrey, namespace=s.namespace)
        try:
            return admin.chron_status()
        finally:
            admin.close()

    statuses.append(await asyncio.to_thread(as_audrey))
    assert all(st.tree_size >= statuses[0].tree_size > 0 for st in statuses)
    stranger = AsyncAdmin(s.url, "cla_demo.not-a-token", namespace=s.namespace)
    try:
        with pytest.raises(AdminError, match="unauthorized"):
            await stranger.chron_status()
    finally:
        await stranger.close()


async def test_a_time_window_lists_by_time_and_pages_in_that_order(stack: Stack) -> None:
    """Records stored out of time order come by leaf index without a window, by time within one,
    and paging a window (both ways) follows the time order without skipping or repeating."""
    s = stack.settings
    nc = await connect_as(s, "gate")
    try:
        js = nc.jetstream()
        for i in (2, 0, 1, 3):  # stored in this order: leaf order differs from time order
            spec = Spec("deploy-bot", "s.emp1", f"deploy:step-{i}")
            await js.publish(s.names.decision_subject("demo", spec.agent, "allow"),
                             sealed(s, decision("demo", i, spec)))
    finally:
        await nc.close()
    await wait_count(s.require_database_url(), 4, "SELECT count(*) FROM chron_events WHERE kind = 'decision'")
    by_leaf = [r.chron_id[-1] for r in await stack.admin.chron_list(kind="decision")]
    assert by_leaf == ["3", "1", "0", "2"]
    window = {"kind": "decision", "since": at(0), "until": at(3)}
    assert [r.chron_id[-1] for r in await stack.admin.chron_list(**window)] == ["2", "1", "0"]
    walked, page = [], await stack.admin.chron_list(limit=1, **window)
    while page:
        walked.append(page[0])
        page = await stack.admin.chron_list(limit=1, before=page[0].leaf_index, **window)
    assert [r.chron_id[-1] for r in walked] == ["2", "1", "0"]
    newer = await stack.admin.chron_list(limit=1, after=walked[-1].leaf_index, **window)
    assert [r.chron_id[-1] for r in newer] == ["1"]
