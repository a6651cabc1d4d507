"""Every reply checked against Chron: what a fault scenario reports, and what makes it fail."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.faults.load import TIMEOUT_S, Record

LATE_S = 1.0
"""How far past its deadline a failed check may come back (scheduling on a busy 2-core machine)."""
UNRECORDED = "chron:unavailable"


@dataclass
class Result:
    scenario: str
    sent: int = 0
    allow: int = 0
    deny: int = 0
    """Answers with a chron id, by outcome."""
    unrecorded_deny: int = 0
    """DENY chron:unavailable: the gate could not record, so the agent must not act."""
    errors: Counter[str] = field(default_factory=Counter)
    late: int = 0
    """Errors that came back later than the deadline (+ LATE_S)."""
    unrecorded_allow: int = 0
    missing: list[str] = field(default_factory=list)
    """Answers with a chron id that Chron does not hold with the same outcome and request id."""
    duplicates: list[str] = field(default_factory=list)
    """Chron ids in more than one answer, request ids with more than one row."""
    not_delivered: int = 0
    """Decisions recorded for a check whose caller got an error or an unrecorded DENY."""
    pause_s: float = 0.0
    """The longest time without a recorded answer during the scenario."""
    stores_again_s: float | None = None
    """From the start of the fault to Chron storing a new leaf (None: not within the scenario's limit)."""
    answers_again_s: float = 0.0
    """From the start of the fault to the first recorded answer to a check asked after it."""
    drain_s: float | None = None
    """From the end of the fault to Chron holding every decision answered until then (None: Chron never
    held every decision)."""
    recorded_at_end: int = -1
    """Recorded answers to the checks of the load's last 2 s (0: the gate did not record again)."""
    verify: bool = False
    dense: bool = False
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} recorded answers missing from Chron, e.g. {self.missing[:3]}")
        if self.duplicates:
            found.append(f"duplicates: {self.duplicates[:5]}")
        if self.late:
            found.append(f"{self.late} errors came later than the {TIMEOUT_S:g} s deadline")
        if self.unrecorded_allow:
            found.append(f"{self.unrecorded_allow} ALLOW answers without a chron id")
        if self.drain_s is None or self.stores_again_s is None:
            found.append("Chron never held every decision: it did not heal")
        if not self.verify:
            found.append("claiim chron verify failed")
        if not self.dense:
            found.append("leaf indexes are not dense")
        if not self.allow + self.deny:
            found.append("no answer was recorded at all")
        if not self.recorded_at_end:
            found.append("no recorded answer in the load's last 2 s: the decision path did not heal")
        return found + self.notes

    def row(self) -> dict[str, Any]:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "0"
        return {"scenario": self.scenario, "sent": self.sent, "ALLOW/DENY recorded": f"{self.allow}/{self.deny}",
                "DENY unrecorded": self.unrecorded_deny, "errors": errors, "missing": len(self.missing),
                "duplicates": len(self.duplicates), "recorded, not delivered": self.not_delivered,
                "longest pause (s)": f"{self.pause_s:.2f}", "answers again (s)": f"{self.answers_again_s:.2f}",
                "Chron stores again (s)": "never" if self.stores_again_s is None else f"{self.stores_again_s:.2f}",
                "Chron drained (s)": "never" if self.drain_s is None else f"{self.drain_s:.2f}",
                "verify": "ok" if self.verify and self.dense else "FAIL"}


def audit(scenario: str, records: Sequence[Record], rows: Sequence[Any], drain_s: float | None, verify: bool,
          dense: bool) -> Result:
    """Check every reply of ``records`` against Chron's decision ``rows`` (chron_id, outcome, request_id)."""
    result = Result(scenario, sent=len(records), drain_s=drain_s, verify=verify, dense=dense)
    by_chron_id = {r["chron_id"]: r for r in rows}
    per_request = Counter(r["request_id"] for r in rows if r["request_id"])
    result.duplicates = sorted(rid for rid, n in per_request.items() if n > 1)
    answered_ids = Counter(r.chron_id for r in records if r.chron_id)
    result.duplicates += sorted(c for c, n in answered_ids.items() if n > 1)
    undelivered = set()
    for record in records:
        if record.error:
            result.errors[record.error] += 1
            result.late += record.took > TIMEOUT_S + LATE_S
            undelivered.add(record.request_id)
        elif not record.chron_id:
            result.unrecorded_allow += record.outcome == "ALLOW"
            result.unrecorded_deny += record.outcome == "DENY" and record.reason.startswith(UNRECORDED)
            undelivered.add(record.request_id)
        else:
            result.allow += record.outcome == "ALLOW"
            result.deny += record.outcome == "DENY"
            row = by_chron_id.get(record.chron_id)
            if row is None or row["outcome"] != record.outcome or row["request_id"] != record.request_id:
                result.missing.append(record.chron_id)
    result.not_delivered = sum(rid in undelivered for rid in per_request)
    recorded = sorted(r.answered for r in records if r.chron_id)
    result.pause_s = max((b - a for a, b in itertools.pairwise(recorded)), default=0.0)
    return result


def table(results: Sequence[Result]) -> str:
    """A Markdown table of the scenarios."""
    if not results:
        return ""
    heads = list(results[0].row())
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    lines += ["| " + " | ".join(str(r.row()[h]) for h in heads) + " |" for r in results]
    return "\n".join(lines)
