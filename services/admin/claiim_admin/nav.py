"""The counts in the navigation: pending proposals, for those who decide them (admins and the operator),
and waiting approvals, for whoever the admin API shows them to (an anchor: its agents' own).

They are read with the person's own token, at most once every :data:`TTL` seconds per session and again
after any form post (which may have decided one), so most page renders cost no request at all and none
costs more than the two small reads, made together. A read that fails leaves the last counts shown: the
navigation never turns an outage into an error page.
"""

from __future__ import annotations

import asyncio

from claiim import AsyncAdmin, ClaiimError

from claiim_admin.sessions import Session

TTL = 5.0
"""Seconds the counts of a session are shown before they are read again."""
DECIDE_PROPOSALS = ("admin", "operator")
"""The roles that approve or reject proposals (an auditor reads them, an anchor never sees them)."""


def due(session: Session, now: float) -> bool:
    """Whether the session's counts are missing or older than :data:`TTL` (``now`` on the sessions' clock)."""
    return session.counted_at is None or now - session.counted_at >= TTL


async def refresh(admin: AsyncAdmin, session: Session, now: float) -> None:
    """Read what waits for ``session`` into :attr:`Session.counts`; a failed read keeps the old count."""
    async def proposals() -> int:
        return len(await admin.proposals("pending"))

    async def approvals() -> int:
        return len(await admin.approvals())

    reads = {"approvals": approvals()}
    if session.role in DECIDE_PROPOSALS:
        reads["proposals"] = proposals()
    results = await asyncio.gather(*reads.values(), return_exceptions=True)
    for name, result in zip(reads, results, strict=True):
        if isinstance(result, int):
            session.counts[name] = result
        elif not isinstance(result, ClaiimError):
            raise result
    session.counted_at = now
