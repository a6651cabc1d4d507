"""Turning stream messages into Chron rows (pure). A message that does not decode, or that its
check refuses (an event that is not authentic), is parked instead."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import msgspec
from claiim_core.eventauth import AuthError, ControlKeyring, GateKeyring, open_control, open_decision
from claiim_core.events import ControlEvent, aggregate, decode_control
from claiim_core.names import Names
from claiim_core.refs import label
from claiim_core.schemas import DecisionEvent

_decision = msgspec.json.Decoder(DecisionEvent)

class Row(NamedTuple):
    """One record as Chron stores it: the columns of ``chron_events`` it fills, in their order (the
    leaf index and hash are added when the row becomes a leaf)."""

    chron_id: str
    kind: str
    stream: str
    stream_seq: int
    subject: str
    org: str
    agent_id: str
    actor: str
    outcome: str
    action: str
    target: str
    anchor: str
    policy: str
    skill: str
    reason: str
    rule: str
    gate: str
    control_seq: int
    occurred_at: datetime
    event: bytes
    trace_id: str | None = None
    """The W3C trace id a decision carries (None for control events and untraced decisions)."""
    approval_id: str | None = None
    """The approval a decision asks for or ends, or a grant, refusal or expiry decides (else None)."""


ROW_COLUMNS = Row._fields
Check = Callable[[DecisionEvent | ControlEvent, str, int], None]
"""Accepts an event found at a stream sequence on a subject, or raises :class:`AuthError`."""


@dataclass(frozen=True, slots=True)
class Parked:
    stream: str
    stream_seq: int
    subject: str
    data: bytes
    error: str


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def decision_row(stream: str, seq: int, subject: str, data: bytes, e: DecisionEvent | None = None) -> Row:
    e = e or _decision.decode(data)
    return Row(e.chron_id, "decision", stream, seq, subject, e.org, e.agent_id, "", e.outcome, e.action, e.target,
               e.anchor, e.policy, e.skill, e.reason, e.rule, e.gate, e.control_seq, _time(e.decided_at), data,
               e.trace_id or None, e.approval.id if e.approval else None)


def control_row(stream: str, seq: int, subject: str, data: bytes, e: ControlEvent | None = None) -> Row:
    e = e or decode_control(data)
    name = aggregate(e)[1]
    version = getattr(e, "version", None)
    what = label(name, version) if version else name
    agent = str(getattr(e, "agent_id", ""))
    anchor = str(getattr(e, "anchor", ""))
    policy = what if e.__struct_config__.tag == "policy.published" else ""
    skill = what if e.__struct_config__.tag == "skill.published" else ""
    tag = str(e.__struct_config__.tag)
    approval = getattr(e, "approval_id", None)
    return Row(e.event_id, "control", stream, seq, subject, e.org, agent, e.actor, "", tag, what, anchor, policy,
               skill, f"{e.actor} {tag} {what}", "", "", seq, _time(e.at), data, None, approval)


def to_row(kind: str, stream: str, seq: int, subject: str, data: bytes, check: Check | None = None) -> Row | Parked:
    """The row for one message, or a :class:`Parked` record naming why it cannot be stored."""
    try:
        if kind == "decision":
            decision = _decision.decode(data)
            if check is not None:
                check(decision, subject, seq)
            return decision_row(stream, seq, subject, data, decision)
        control = decode_control(data)
        if check is not None:
            check(control, subject, seq)
        return control_row(stream, seq, subject, data, control)
    except AuthError as e:
        return Parked(stream, seq, subject, data, f"unauthenticated: {e}")
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
        return Parked(stream, seq, subject, data, f"{type(e).__name__}: {e}")


@dataclass
class StreamAuthenticator:
    """Authenticates events read back from the streams or the database as Chron did when it took
    them (``claiim chron rebuild`` and ``verify``). A keyring that is None is not checked.

    Control events need their predecessor on their subject: :meth:`learn_control` is given every
    control-stream position first.
    """

    names: Names
    gate_keys: GateKeyring | None
    control_keys: ControlKeyring | None
    _prev: dict[int, int] = field(default_factory=dict)

    def learn_control(self, positions: Iterable[tuple[int, str]]) -> None:
        """The control stream's ``(sequence, subject)`` pairs, in any order."""
        last: dict[str, int] = {}
        for seq, subject in sorted(positions):
            self._prev[seq] = last.get(subject, 0)
            last[subject] = seq

    def check(self, event: DecisionEvent | ControlEvent, subject: str, seq: int) -> None:
        if isinstance(event, DecisionEvent):
            if self.gate_keys is not None:
                open_decision(event, subject, seq, self.gate_keys, self.names)
        elif self.control_keys is not None:
            if seq not in self._prev:
                raise AuthError(f"control stream position {seq} unknown")
            open_control(event, subject, seq, self._prev[seq], self.control_keys, self.names)
