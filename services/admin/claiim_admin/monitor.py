"""Checking Chron's signed checkpoints the way an outside monitor would: each new checkpoint must
carry a valid signature of the log's key and extend the last one verified (a consistency proof,
checked here, not taken on trust: :class:`claiim_core.trust.TrustedCheckpoints`). A fork, a
shrunken log or a bad signature is a failure.

Verification runs while someone uses the UI (the overview asks for it every few seconds and the
checkpoints page has a button); unattended monitoring is ``claiim chron verify`` from a scheduler.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from claiim import AsyncAdmin, ClaiimError
from claiim_core.checkpoint import CheckpointError, Verifier
from claiim_core.proofs import ConsistencyProof
from claiim_core.schemas import CheckpointInfo
from claiim_core.trust import TrustedCheckpoints, TrustError

MIN_INTERVAL = 3.0
"""Seconds between two verifications that nobody forced."""


@dataclass(frozen=True)
class Verification:
    at: str
    ok: bool
    size: int
    """The tree size verified (0 when there was nothing to verify)."""
    message: str


class CheckpointMonitor:
    def __init__(self, verifier: Verifier, clock: Callable[[], float] = time.monotonic) -> None:
        self.verifier = verifier
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last_run = -MIN_INTERVAL
        self.trust = TrustedCheckpoints(verifier)
        """The newest checkpoint verified so far; the next one must extend it."""
        self.results: deque[Verification] = deque(maxlen=50)

    @property
    def last(self) -> Verification | None:
        return self.results[-1] if self.results else None

    def signature_ok(self, info: CheckpointInfo) -> bool:
        try:
            self.verifier.open(info.note)
        except CheckpointError:
            return False
        return True

    async def verify(self, admin: AsyncAdmin, force: bool = False) -> Verification | None:
        """Verify the newest checkpoint against the last trusted one (at most every MIN_INTERVAL s)."""
        async with self._lock:
            if not force and self._clock() - self._last_run < MIN_INTERVAL:
                return self.last
            self._last_run = self._clock()
            try:
                result = await self._verify(admin)
            except ClaiimError as e:
                result = self._result(False, 0, f"could not ask Chron: {e}")
            previous = self.last
            if force or previous is None or (result.ok, result.size, result.message) != (
                    previous.ok, previous.size, previous.message):
                self.results.append(result)
            return result

    async def _verify(self, admin: AsyncAdmin) -> Verification:
        listed = await admin.chron_checkpoints(limit=20)
        if not listed:
            return self._result(True, 0, "no checkpoint yet")
        trust = self.trust
        at = listed[-1]
        try:
            if trust.trusted is None:  # first run: start from the oldest checkpoint Chron lists
                trust.update(at.note)
            base = trust.trusted
            assert base is not None
            at = listed[0]
            newest = trust.open(at.note)
            proof: list[bytes] = []
            if (sizes := trust.proof_needed(newest)) is not None:
                bundle = msgspec.convert(await admin.chron_consistency(*sizes), ConsistencyProof)
                proof = [bytes.fromhex(h) for h in bundle.proof]
            trust.update(at.note, proof)
        except TrustError as e:
            where = f"checkpoint of tree size {at.size}: " if e.problem == "bad-signature" else ""
            return self._result(False, at.size, f"{where}{e}")
        except (msgspec.ValidationError, ValueError) as e:
            return self._result(False, at.size, f"Chron's consistency proof for tree size {at.size} is not one: {e}")
        return self._result(True, newest.size, f"tree size {newest.size} signed by {self.verifier.name}; "
                                               f"extends the verified tree size {base.size}")

    @staticmethod
    def _result(ok: bool, size: int, message: str) -> Verification:
        return Verification(datetime.now(UTC).isoformat(timespec="seconds"), ok, size, message)
