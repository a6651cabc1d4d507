"""The evidence for promoting a log-only candidate policy version: of an agent's decisions, which the
candidate evaluated and which it would have decided otherwise. Pure: fed Chron's records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from claiim_core.schemas import ChronRecord, DecisionEvent

_event = msgspec.json.Decoder(DecisionEvent)


@dataclass(frozen=True, slots=True)
class Changed:
    """A decision the candidate would have decided otherwise."""

    chron_id: str
    occurred_at: str
    action: str
    target: str
    outcome: str
    rule: str
    candidate: str
    candidate_outcome: str
    candidate_rule: str


@dataclass
class ShadowReport:
    decisions: int = 0
    """Decisions read."""
    evaluated: Counter[str] = field(default_factory=Counter)
    """Per candidate version, the decisions it was evaluated on."""
    changed: list[Changed] = field(default_factory=list)
    """Newest first, as read."""

    def lines(self) -> list[str]:
        if not self.evaluated:
            return [f"{self.decisions} decisions, none evaluated by a log-only candidate"]
        flips = Counter(f"{c.outcome} -> {c.candidate_outcome}" for c in self.changed)
        by = ", ".join(f"{label} ({n})" for label, n in sorted(self.evaluated.items()))
        how = f" ({', '.join(f'{k}: {n}' for k, n in sorted(flips.items()))})" if flips else ""
        out = [f"{self.decisions} decisions; {sum(self.evaluated.values())} evaluated by {by}; "
               f"{len(self.changed)} would change{how}"]
        out += [f"{c.chron_id}  {c.occurred_at}  {c.action} {c.target or '-'}: {c.outcome} [{c.rule}] -> "
                f"{c.candidate}: {c.candidate_outcome} [{c.candidate_rule}]" for c in self.changed]
        return out


def shadow_report(records: Iterable[ChronRecord]) -> ShadowReport:
    """What the log-only candidates would have changed among ``records`` (decision records; others are
    skipped)."""
    report = ShadowReport()
    for record in records:
        if record.kind != "decision":
            continue
        report.decisions += 1
        shadow = _event.decode(bytes(record.event)).shadow
        if not shadow:
            continue
        report.evaluated[shadow.policy] += 1
        if shadow.outcome != record.outcome:
            report.changed.append(Changed(record.chron_id, record.occurred_at, record.action, record.target,
                                          record.outcome, record.rule, shadow.policy, shadow.outcome, shadow.rule))
    return report
