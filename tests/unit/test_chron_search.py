"""Chron's search as SQL, its time bounds and the SDK's query, without a database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from claiim import AsyncAdmin
from claiim_chron.queries import QueryError, parse_time
from claiim_chron.search import Search, action_condition, escape_like, search_sql
from claiim_core.schemas import ChronQuery, ChronResult, ChronStatus
from hypothesis import given, settings
from hypothesis import strategies as st


def like(pattern: str, text: str) -> bool:
    """PostgreSQL's LIKE with its default escape character, backslash (a reference for the tests)."""
    regex, chars = "", iter(pattern)
    for c in chars:
        if c == "\\":
            regex += re.escape(next(chars, "\\"))
        else:
            regex += {"%": ".*", "_": "."}.get(c, re.escape(c))
    return re.fullmatch(regex, text, re.DOTALL) is not None


TEXT = st.text(alphabet=st.sampled_from("ab%_\\:*x"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT)
def test_an_escaped_prefix_matches_exactly_the_texts_that_start_with_it(prefix: str, text: str) -> None:
    """escape_like(p) + '%' matches a text if and only if the text starts with p, whatever p holds."""
    assert like(escape_like(prefix) + "%", text) == text.startswith(prefix)


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT)
def test_an_escaped_text_matches_only_itself(value: str, text: str) -> None:
    """escape_like(v) as a whole pattern matches v and nothing else."""
    assert like(escape_like(value), text) == (text == value)


@pytest.mark.parametrize(("action", "condition"), [
    ("deploy:staging", ("=", "deploy:staging")),
    ("deploy:*", ("LIKE", "deploy:%")),
    ("deploy_x*", ("LIKE", "deploy\\_x%")),
    ("50%*", ("LIKE", "50\\%%")),
    ("a\\b*", ("LIKE", "a\\\\b%")),
    ("de*ploy", ("=", "de*ploy")),
    ("*", ("LIKE", "%")),
])
def test_an_action_is_exact_unless_it_ends_with_a_star(action: str, condition: tuple[str, str]) -> None:
    """Only a trailing * makes a prefix; %, _ and backslash in it are escaped, a * elsewhere is a character."""
    assert action_condition(action) == condition


def test_no_filter_lists_newest_first_by_leaf_index() -> None:
    """Without filters the search is every record, newest leaf first, at most ``limit``."""
    assert search_sql(Search()) == ("SELECT * FROM chron_events ORDER BY leaf_index DESC LIMIT $1", [50])


def test_filters_are_parameters_in_order() -> None:
    """Each filter is one numbered parameter; no value reaches the SQL text."""
    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    sql, args = search_sql(Search(org="demo", agent_id="x'; DROP TABLE chron_events; --", anchor="a",
                                  action="deploy:*", outcome="DENY", kind="decision", trace_id="ab" * 16, since=since,
                                  until=until, before=90, limit=10))
    assert sql == ("SELECT * FROM chron_events WHERE org = $1 AND agent_id = $2 AND anchor = $3 AND outcome = $4 "
                   "AND kind = $5 AND trace_id = $6 AND action LIKE $7 AND occurred_at >= $8 AND occurred_at < $9 "
                   "AND (occurred_at, leaf_index) < ((SELECT occurred_at FROM chron_events WHERE leaf_index = $10), "
                   "$10) ORDER BY occurred_at DESC, leaf_index DESC LIMIT $11")
    assert args == ["demo", "x'; DROP TABLE chron_events; --", "a", "DENY", "decision", "ab" * 16, "deploy:%", since,
                    until, 90, 10]


def test_after_reads_upwards_and_returns_newest_first() -> None:
    """``after`` takes the ``limit`` leaves just above the cursor, then orders them newest first."""
    sql, args = search_sql(Search(org="demo", after=7, limit=3))
    assert sql == ("SELECT * FROM (SELECT * FROM chron_events WHERE org = $1 AND leaf_index > $2 "
                   "ORDER BY leaf_index ASC LIMIT $3) page ORDER BY leaf_index DESC")
    assert args == ["demo", 7, 3]


def test_a_time_window_is_ordered_by_time_and_paged_from_the_cursor_records_time() -> None:
    """With since/until the order is (occurred_at, leaf_index), and so is the cursor, in both directions."""
    since = datetime(2026, 1, 1, tzinfo=UTC)
    sql, args = search_sql(Search(org="demo", since=since, after=5, limit=3))
    assert sql == ("SELECT * FROM (SELECT * FROM chron_events WHERE org = $1 AND occurred_at >= $2 AND "
                   "(occurred_at, leaf_index) > ((SELECT occurred_at FROM chron_events WHERE leaf_index = $3), $3) "
                   "ORDER BY occurred_at ASC, leaf_index ASC LIMIT $4) page ORDER BY occurred_at DESC, leaf_index DESC")
    assert args == ["demo", since, 5, 3]


def test_zero_is_a_cursor_not_a_missing_one() -> None:
    """before=0 and after=0 filter (nothing is below leaf 0; everything but leaf 0 is above it)."""
    assert "leaf_index < $1" in search_sql(Search(before=0))[0]
    assert "leaf_index > $1" in search_sql(Search(after=0))[0]


def test_a_time_without_an_offset_is_utc() -> None:
    """A naive ISO time is taken as UTC, one with an offset keeps it, and none means no bound."""
    assert parse_time("since", "2026-11-25T10:00:00") == datetime(2026, 11, 25, 10, tzinfo=UTC)
    plus_two = parse_time("until", "2026-11-25T12:00:00+02:00")
    assert plus_two == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert plus_two is not None and plus_two.utcoffset() == timedelta(hours=2)
    assert parse_time("since", None) is None and parse_time("since", "") is None


def test_a_bad_time_names_its_field() -> None:
    """A time that is not ISO 8601 is refused with the field's name and the value."""
    with pytest.raises(QueryError, match=r"^until: not an ISO 8601 time: 'noon'$"):
        parse_time("until", "noon")


@pytest.mark.parametrize("field", ["before", "after"])
def test_a_negative_cursor_does_not_decode(field: str) -> None:
    """Cursors are leaf indexes: a negative one is not a valid query."""
    with pytest.raises(msgspec.ValidationError, match=f"Expected `int` >= 0 - at `\\$.{field}`"):
        msgspec.json.decode(msgspec.json.encode({"admin_token": "t", "op": "list", field: -1}), type=ChronQuery)


class Recorder:
    """A transport that keeps each request and answers with ``reply``."""

    def __init__(self, reply: ChronResult) -> None:
        self.reply = reply
        self.sent: list[dict[str, Any]] = []

    async def request(self, subject: str, payload: bytes, timeout: float,
                      headers: dict[str, str] | None = None) -> bytes:
        self.sent.append(msgspec.json.decode(payload))
        return msgspec.json.encode(self.reply)

    async def close(self) -> None:
        pass


async def test_the_sdk_sends_every_search_filter() -> None:
    """chron_list puts each of its filters into the ChronQuery it sends."""
    transport = Recorder(ChronResult())
    admin = AsyncAdmin("nats://x:4222", "t", org="demo", transport=transport)
    await admin.chron_list(anchor="s.emp1", action="deploy:*", until="2026-11-25T10:00:00Z", trace_id="0f" * 16,
                           before=9, after=2, limit=5)
    sent = transport.sent[0]
    assert {k: sent[k] for k in ("op", "org", "anchor", "action", "until", "trace_id", "before", "after",
                                 "limit")} == {
        "op": "list", "org": "demo", "anchor": "s.emp1", "action": "deploy:*", "until": "2026-11-25T10:00:00Z",
        "trace_id": "0f" * 16, "before": 9, "after": 2, "limit": 5}


async def test_the_sdk_returns_the_status() -> None:
    """chron_status asks for op status and returns the typed status of the answer."""
    status = ChronStatus(tree_size=3, last_recorded_at="2026-11-25T10:00:00+00:00", checkpoint_size=2,
                         checkpoint_signed_at="2026-11-25T10:00:01+00:00", pending=0)
    transport = Recorder(ChronResult(status=status))
    admin = AsyncAdmin("nats://x:4222", "t", transport=transport)
    assert await admin.chron_status() == status
    assert transport.sent[0]["op"] == "status"


def test_the_record_filters_are_declared_once() -> None:
    """Chron's search and the SDK's chron_list take exactly the filters of RecordFilter (the wire's declaration;
    the synchronous Admin passes its keywords through)."""
    import dataclasses
    import inspect

    from claiim_chron.search import Search
    from claiim_core.schemas import RecordFilter

    filters = set(RecordFilter.__struct_fields__)
    assert {f.name for f in dataclasses.fields(Search)} == filters | {"org"}
    assert set(inspect.signature(AsyncAdmin.chron_list).parameters) - {"self"} == filters - {"chron_id"}
