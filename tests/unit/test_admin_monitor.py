"""The admin UI's checkpoint monitor catches what an outside monitor must: a bad signature, a
fork, a log that shrank, and a consistency proof that does not hold. Chron is replaced here by an
object answering from an in-memory tree (the integration and browser tests use the real one)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import msgspec
from claiim_admin.monitor import CheckpointMonitor
from claiim_core.checkpoint import Checkpoint, Signer
from claiim_core.merkle import Frontier, consistency_ranges, leaf_hash, proof_from
from claiim_core.proofs import ConsistencyProof
from claiim_core.schemas import CheckpointInfo

KEY = Signer.from_seed("claiim-test", bytes(32))
ORIGIN = "claiim/test"


class FakeChron:
    """Chron's answers from an in-memory tree, with a signed checkpoint after each growth."""

    def __init__(self) -> None:
        self.frontier, self.nodes = Frontier(), {}
        self.notes: dict[int, str] = {}

    def grow(self, n: int, signer: Signer = KEY, salt: bytes = b"") -> None:
        for _ in range(n):
            for level, index, h in self.frontier.append(leaf_hash(salt + secrets.token_bytes(8))):
                self.nodes[(level, index)] = h
        size = self.frontier.size
        self.notes[size] = signer.sign(Checkpoint(ORIGIN, size, self.frontier.root()))

    async def chron_checkpoints(self, limit: int = 20) -> list[CheckpointInfo]:
        sizes = sorted(self.notes, reverse=True)[:limit]
        return [CheckpointInfo(size=s, root="", signed_at="", note=self.notes[s]) for s in sizes]

    async def chron_consistency(self, first: int, second: int = 0) -> dict[str, Any]:
        proof = proof_from(consistency_ranges(first, second), self.nodes)
        bundle = ConsistencyProof(first=self.notes[first], second=self.notes[second], proof=[h.hex() for h in proof])
        return dict(msgspec.to_builtins(bundle))


def verify(monitor: CheckpointMonitor, chron: FakeChron) -> Any:
    return asyncio.run(monitor.verify(chron, force=True))  # type: ignore[arg-type]


def test_a_growing_log_verifies_checkpoint_after_checkpoint() -> None:
    """Each new checkpoint is signed and extends the last one verified."""
    chron, monitor = FakeChron(), CheckpointMonitor(KEY.verifier)
    chron.grow(5)
    chron.grow(8)
    first = verify(monitor, chron)
    assert first.ok and first.size == 13 and "extends the verified tree size 5" in first.message
    chron.grow(20)
    second = verify(monitor, chron)
    assert second.ok and second.size == 33 and "extends the verified tree size 13" in second.message


def test_a_checkpoint_signed_by_another_key_fails() -> None:
    """A checkpoint the log's key did not sign is a failure, however consistent it is."""
    chron, monitor = FakeChron(), CheckpointMonitor(KEY.verifier)
    chron.grow(4)
    assert verify(monitor, chron).ok
    chron.grow(3, signer=Signer.from_seed("claiim-test", b"\x01" * 32))
    result = verify(monitor, chron)
    assert not result.ok and "checkpoint of tree size 7" in result.message


def test_a_rewritten_history_is_a_fork() -> None:
    """A new log whose signed tree does not extend the verified one (history rewritten) fails."""
    chron, monitor = FakeChron(), CheckpointMonitor(KEY.verifier)
    chron.grow(6)
    assert verify(monitor, chron).ok
    rewritten = FakeChron()
    rewritten.grow(6, salt=b"other")
    rewritten.grow(4, salt=b"other")
    result = verify(monitor, rewritten)
    assert not result.ok and result.message == ("the tree of 10 leaves does not extend the trusted tree of 6 leaves "
                                                "(a fork)"), result.message


def test_two_roots_for_one_size_and_a_shrunken_log_fail() -> None:
    """The same tree size with another root is a fork; a smaller tree than verified is a truncation."""
    chron, monitor = FakeChron(), CheckpointMonitor(KEY.verifier)
    chron.grow(9)
    assert verify(monitor, chron).ok
    same_size = FakeChron()
    same_size.grow(9, salt=b"x")
    assert "fork: two roots for tree size 9" in verify(monitor, same_size).message
    shorter = FakeChron()
    shorter.grow(4)
    result = verify(monitor, shorter)
    assert not result.ok and "the log shrank" in result.message


def test_an_empty_log_is_not_a_failure_and_results_are_kept() -> None:
    """No checkpoint yet is reported as such; every forced run is kept in the results."""
    monitor = CheckpointMonitor(KEY.verifier)
    assert verify(monitor, FakeChron()).message == "no checkpoint yet"
    chron = FakeChron()
    chron.grow(2)
    verify(monitor, chron)
    assert [r.ok for r in monitor.results] == [True, True] and monitor.last is not None and monitor.last.size == 2
