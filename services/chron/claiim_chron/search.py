"""Chron's record search as SQL (pure): filters, keyset paging, action prefixes.

Results are newest first, by leaf index (the Merkle position, dense and in the order Chron stored
the rows). A search with a time window (``since``/``until``) is ordered by the time the records
occurred instead, then by leaf index: the window is then one range of the (org, occurred_at,
leaf_index) index, and a page of it a walk down that range, however far back the window lies.
(The two orders differ only where Chron stored a record after a later one, by a few seconds.)

Paging is by keyset, never by OFFSET, so that a page deep in a log of millions of rows costs what
the first page costs: ``before`` (a record's leaf index) gives the page after that record in the
search's order, ``after`` the page before it. Every value is a query parameter; only column names
and operators, all fixed here, are part of the SQL text. Migrations 004, 005, 007 and 008 hold the
indexes these queries use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Search:
    """Filters, combined with AND; None means no filter (``org`` None: every org)."""

    org: str | None = None
    chron_id: str | None = None
    agent_id: str | None = None
    anchor: str | None = None
    action: str | None = None
    """Exact, or a prefix when it ends with ``*`` (``deploy:*``)."""
    outcome: str | None = None
    kind: str | None = None
    trace_id: str | None = None
    approval_id: str | None = None
    since: datetime | None = None
    """Inclusive lower bound on ``occurred_at``."""
    until: datetime | None = None
    """Exclusive upper bound on ``occurred_at``."""
    before: int | None = None
    """Only leaves with a smaller index: the page older than a record."""
    after: int | None = None
    """Only leaves with a larger index: the page newer than a record (the ``limit`` oldest of them)."""
    limit: int = 50


_EQUAL = ("org", "chron_id", "agent_id", "anchor", "outcome", "kind", "trace_id", "approval_id")


def escape_like(text: str) -> str:
    """A LIKE pattern that matches ``text`` only: ``%``, ``_`` and the escape character itself
    (backslash, LIKE's default) are escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def action_condition(action: str) -> tuple[str, str]:
    """The operator and operand that match ``action``: ``=`` itself, or ``LIKE`` its prefix when it
    ends with ``*`` (a ``*`` anywhere else is an ordinary character)."""
    if action.endswith("*"):
        return "LIKE", escape_like(action[:-1]) + "%"
    return "=", action


def search_sql(s: Search) -> tuple[str, list[object]]:
    """The SQL of ``s`` and its parameters; its rows come newest first."""
    where: list[str] = []
    args: list[object] = []

    def add(condition: str, value: object) -> None:
        args.append(value)
        where.append(condition.replace("?", f"${len(args)}"))

    for column in _EQUAL:
        if (value := getattr(s, column)) is not None:
            add(f"{column} = ?", value)
    if s.action is not None:
        operator, operand = action_condition(s.action)
        add(f"action {operator} ?", operand)
    for condition, bound in (("occurred_at >= ?", s.since), ("occurred_at < ?", s.until)):
        if bound is not None:
            add(condition, bound)
    timed = s.since is not None or s.until is not None
    for operator, cursor in (("<", s.before), (">", s.after)):
        if cursor is None:
            continue
        if timed:  # the cursor record's place in time order: its time, then its leaf index
            # Both ? are the one parameter: the cursor record's time is looked up by its leaf index.
            add(f"(occurred_at, leaf_index) {operator} "
                "((SELECT occurred_at FROM chron_events WHERE leaf_index = ?), ?)", cursor)
        else:
            add(f"leaf_index {operator} ?", cursor)
    args.append(s.limit)
    order = "occurred_at {0}, leaf_index {0}" if timed else "leaf_index {0}"
    matching = f"SELECT * FROM chron_events {'WHERE ' + ' AND '.join(where) + ' ' if where else ''}"
    if s.after is None:
        return f"{matching}ORDER BY {order.format('DESC')} LIMIT ${len(args)}", args
    # The page just newer than ``after``: read upwards from it, then turn the page round.
    return (f"SELECT * FROM ({matching}ORDER BY {order.format('ASC')} LIMIT ${len(args)}) page "
            f"ORDER BY {order.format('DESC')}"), args
