"""Request bytes in, decision event out: decode, evaluate, and name every failure.

Every input, however bad, gives a :class:`DecisionEvent`, so that every request gets an explicit
reply and every reply is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from claiim_core.approvals import new_approval
from claiim_core.conditions import Conditions
from claiim_core.decision import EPOCH, Verdict, deny, evaluate
from claiim_core.ids import chron_id, rfc3339
from claiim_core.reasons import REQUEST, reason
from claiim_core.registry import Registry
from claiim_core.schemas import MAX_REQUEST_BYTES, Approval, CheckRequest, DecisionEvent
from msgspec import UNSET, UnsetType

_decoder = msgspec.json.Decoder(CheckRequest)


@dataclass(frozen=True, slots=True)
class Moment:
    """When a decision happens and the randomness for its id (the I/O shell supplies both)."""

    unix_us: int
    randomness: bytes

    @property
    def at(self) -> datetime:
        """The decision time as the core takes it."""
        return EPOCH + timedelta(microseconds=self.unix_us)


def decide(data: bytes, registry: Registry, token_secret: bytes, gate: str, now: Moment,
           trace_id: str | None = None, conditions: Conditions | None = None) -> DecisionEvent:
    """Decide the request in ``data`` against ``registry``; ``trace_id``: the caller's, from its
    ``traceparent`` header (:func:`claiim_core.tracecontext.trace_id_of`); ``conditions`` evaluate
    rules' conditions at the decision's time."""
    request: CheckRequest | None = None
    if len(data) > MAX_REQUEST_BYTES:
        verdict = deny(
            reason("request", "oversized", f"{len(data)} bytes, the limit is {MAX_REQUEST_BYTES}"), REQUEST
        )
    else:
        try:
            request = _decoder.decode(data)
        except msgspec.ValidationError as e:  # a subclass of DecodeError: test it first
            verdict = deny(reason("request", "malformed", str(e)), REQUEST)
        except msgspec.DecodeError as e:
            verdict = deny(reason("request", "malformed", f"not a JSON request object: {e}"), REQUEST)
        else:
            verdict = evaluate(registry, request, token_secret, now=now.at,
                               conditions=conditions)
    return event_for(verdict, request, registry.last_seq, gate, now, trace_id)


def event_for(verdict: Verdict, request: CheckRequest | None, control_seq: int, gate: str,
              now: Moment, trace_id: str | None = None) -> DecisionEvent:
    """The decision event of ``verdict``; a PENDING one asks for an approval whose id is its chron id."""
    cid = chron_id(now.unix_us // 1000, now.randomness)
    approval: Approval | UnsetType = UNSET
    if verdict.approval is not None and request is not None:
        ttl, approver = verdict.approval
        approval = new_approval(cid, now.unix_us, ttl, approver, verdict.org, request.agent_id, request.action,
                                request.target, request.context)
    return DecisionEvent(
        chron_id=cid,
        decided_at=rfc3339(now.unix_us),
        outcome=verdict.outcome,
        reason=verdict.reason,
        rule=verdict.rule,
        org=verdict.org,
        agent_id=request.agent_id if request else "",
        anchor=verdict.anchor,
        action=request.action if request else "",
        target=request.target if request else "",
        context=dict(request.context) if request else {},
        request_id=request.request_id if request else None,
        policy=verdict.policy,
        skill=verdict.skill,
        gate=gate,
        control_seq=control_seq,
        trace_id=trace_id or UNSET,
        shadow=verdict.shadow or UNSET,
        approval=approval,
    )
