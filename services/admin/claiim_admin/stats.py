"""Decision counts per org over time, for the overview page. Pure: time comes in as an argument."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MINUTES = 60
"""How far back the ALLOW/DENY chart goes, in one-minute buckets."""
RATE_WINDOW = 10
"""Seconds over which the decision rate is averaged."""


@dataclass
class OrgCounts:
    minutes: dict[int, list[int]] = field(default_factory=dict)
    """Minute (epoch seconds // 60) to [allow, deny]."""
    seconds: dict[int, int] = field(default_factory=dict)
    """Epoch second to decisions in it, for the last few seconds."""
    recent: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=100))
    """The newest decisions, oldest first, as the live feed shows them."""


@dataclass(frozen=True)
class Snapshot:
    rate: float
    """Decisions per second over the last RATE_WINDOW seconds."""
    minutes: list[tuple[int, int, int]]
    """(minute start in epoch seconds, allow, deny) for each of the last MINUTES minutes, oldest first."""
    allow: int
    deny: int


class DecisionStats:
    """Counts decisions by org, minute and second; forgets what is older than the chart shows."""

    def __init__(self) -> None:
        self._orgs: dict[str, OrgCounts] = {}

    def add(self, org: str, at: float, allowed: bool, row: dict[str, str], now: float) -> None:
        """Count one decision taken at ``at`` (epoch seconds) as of ``now``; keep ``row`` for the feed."""
        counts = self._orgs.setdefault(org, OrgCounts())
        minute = int(at // 60)
        if minute > int(now // 60) - MINUTES:
            counts.minutes.setdefault(minute, [0, 0])[0 if allowed else 1] += 1
        second = int(at)
        if second > int(now) - RATE_WINDOW - 1:
            counts.seconds[second] = counts.seconds.get(second, 0) + 1
        counts.recent.append(row)
        self._forget(counts, now)

    def _forget(self, counts: OrgCounts, now: float) -> None:
        oldest_minute, oldest_second = int(now // 60) - MINUTES, int(now) - RATE_WINDOW - 1
        for m in [m for m in counts.minutes if m <= oldest_minute]:
            del counts.minutes[m]
        for s in [s for s in counts.seconds if s <= oldest_second]:
            del counts.seconds[s]

    def recent(self, org: str) -> list[dict[str, str]]:
        counts = self._orgs.get(org)
        return list(counts.recent) if counts else []

    def snapshot(self, org: str, now: float) -> Snapshot:
        counts = self._orgs.setdefault(org, OrgCounts())
        self._forget(counts, now)
        this_minute, this_second = int(now // 60), int(now)
        # The current second is still filling up: the rate counts the RATE_WINDOW whole seconds before it.
        done = sum(n for s, n in counts.seconds.items() if this_second - RATE_WINDOW <= s < this_second)
        series = [(m * 60, n[0], n[1]) for m in range(this_minute - MINUTES + 1, this_minute + 1)
                  for n in (counts.minutes.get(m, [0, 0]),)]
        return Snapshot(rate=done / RATE_WINDOW, minutes=series,
                        allow=sum(a for _, a, _ in series), deny=sum(d for _, _, d in series))
