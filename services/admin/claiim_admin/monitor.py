"""Checking Chron's signed checkpoints the way an outside monitor would: each new checkpoint must
carry a valid signature of the log's key and extend the last one verified (a consistency proof,
checked here, not taken on trust). A fork, a shrunken log or a bad signature is a failure.

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
from claiim_core.checkpoint import Checkpoint, CheckpointError, Verifier
from claiim_core.proofs import ConsistencyProof, ProofError, check_consistency
from claiim_core.schemas import CheckpointInfo

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
        self.trusted: Checkpoint | None = None
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
        try:
            newest = self.verifier.open(listed[0].note)
        except CheckpointError as e:
            return self._result(False, listed[0].size, f"checkpoint of tree size {listed[0].size}: {e}")
        base = self.trusted
        if base is None:  # first run: start from the oldest checkpoint Chron lists
            try:
                base = self.verifier.open(listed[-1].note)
            except CheckpointError as e:
                return self._result(False, listed[-1].size, f"checkpoint of tree size {listed[-1].size}: {e}")
        if newest.size < base.size:
            return self._result(False, newest.size, f"the log shrank: tree size {newest.size} is smaller than the "
                                                    f"verified {base.size}")
        if newest.size == base.size:
            if newest.root != base.root:
                return self._result(False, newest.size, f"fork: two roots for tree size {newest.size}")
        else:
            bundle = await admin.chron_consistency(base.size, newest.size)
            try:
                proof = msgspec.convert(bundle, ConsistencyProof)
                first, second = check_consistency(proof, self.verifier)
            except (ProofError, msgspec.ValidationError) as e:
                return self._result(False, newest.size, f"tree {newest.size} does not extend tree {base.size}: {e}")
            if first.root != base.root:
                return self._result(False, newest.size, f"fork: tree size {base.size} now has root "
                                                        f"{first.root.hex()[:16]}…, verified {base.root.hex()[:16]}…")
            if second.root != newest.root:
                return self._result(False, newest.size, "Chron proved another root than the checkpoint it lists")
        self.trusted = newest
        return self._result(True, newest.size, f"tree size {newest.size} signed by {self.verifier.name}; "
                                               f"extends the verified tree size {base.size}")

    @staticmethod
    def _result(ok: bool, size: int, message: str) -> Verification:
        return Verification(datetime.now(UTC).isoformat(timespec="seconds"), ok, size, message)
