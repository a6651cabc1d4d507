"""Logged-in admins. The browser holds only a random session id (an HttpOnly, SameSite=Strict
cookie); the admin token stays in this process's memory and is sent with each request to the admin
API. Sessions end on logout, after ``idle`` seconds without a request, and after ``absolute``
seconds in any case; a restart of the UI ends them all.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "claiim_session"


@dataclass
class Session:
    sid: str
    token: str
    org: str
    name: str
    role: str
    csrf: str
    created: float
    seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)
    """(kind, text) messages to show once on the next page: ``ok``, ``error`` or ``secret``."""
    counts: dict[str, int] = field(default_factory=dict)
    """What waits for this person, for the navigation (:mod:`claiim_admin.nav`): ``proposals``, ``approvals``."""
    counted_at: float | None = None
    """When :attr:`counts` was read (the sessions' clock); None: read them on the next page."""

    @property
    def read_only(self) -> bool:
        return self.role == "auditor"

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out

    def csrf_ok(self, value: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), value.encode())


class Sessions:
    def __init__(self, idle: float, absolute: float, clock: Callable[[], float]) -> None:
        self._idle, self._absolute, self._clock = idle, absolute, clock
        self._by_id: dict[str, Session] = {}

    def create(self, *, token: str, org: str, name: str, role: str) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), token, org, name, role, secrets.token_urlsafe(24), now, now)
        self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id (and mark it used), else None."""
        session = self._by_id.get(sid or "")
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > self._idle or now - session.created > self._absolute:
            del self._by_id[session.sid]
            return None
        session.seen = now
        return session

    def drop(self, sid: str) -> None:
        self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)
