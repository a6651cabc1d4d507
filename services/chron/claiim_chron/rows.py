"""Turning stream messages into Chron rows (pure). A message that does not decode is parked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec
from claiim_core.events import ControlEvent, aggregate, decode_control
from claiim_core.policy import label
from claiim_core.schemas import DecisionEvent

_decision = msgspec.json.Decoder(DecisionEvent)

ROW_COLUMNS = (
    "chron_id", "kind", "stream", "stream_seq", "subject", "org", "agent_id", "actor", "outcome",
    "action", "target", "anchor", "policy", "skill", "reason", "rule", "gate", "control_seq",
    "occurred_at", "event",
)
Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Parked:
    stream: str
    stream_seq: int
    subject: str
    data: bytes
    error: str


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def decision_row(stream: str, seq: int, subject: str, data: bytes) -> Row:
    e = _decision.decode(data)
    return (e.chron_id, "decision", stream, seq, subject, e.org, e.agent_id, "", e.outcome,
            e.action, e.target, e.anchor, e.policy, e.skill, e.reason, e.rule, e.gate,
            e.control_seq, _time(e.decided_at), data)


def control_row(stream: str, seq: int, subject: str, data: bytes) -> Row:
    e: ControlEvent = decode_control(data)
    name = aggregate(e)[1]
    version = getattr(e, "version", None)
    what = label(name, version) if version else name
    agent = str(getattr(e, "agent_id", ""))
    anchor = str(getattr(e, "anchor", ""))
    policy = what if e.__struct_config__.tag == "policy.published" else ""
    skill = what if e.__struct_config__.tag == "skill.published" else ""
    tag = str(e.__struct_config__.tag)
    return (e.event_id, "control", stream, seq, subject, e.org, agent, e.actor, "", tag, what, anchor,
            policy, skill, f"{e.actor} {tag} {what}", "", "", seq, _time(e.at), data)


def to_row(kind: str, stream: str, seq: int, subject: str, data: bytes) -> Row | Parked:
    """The row for one message, or a :class:`Parked` record naming why it cannot be stored."""
    try:
        if kind == "decision":
            return decision_row(stream, seq, subject, data)
        return control_row(stream, seq, subject, data)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
        return Parked(stream, seq, subject, data, f"{type(e).__name__}: {e}")
