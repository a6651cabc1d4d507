"""The one rule for trusting a newer checkpoint: signed by the log's key, and its tree extends the trusted one."""

from __future__ import annotations

import pytest
from claiim_core.checkpoint import Checkpoint, Signer
from claiim_core.merkle import Frontier, consistency_ranges, leaf_hash, proof_from
from claiim_core.trust import TrustedCheckpoints, TrustError

KEY = Signer.from_seed("claiim-test", bytes(32))


class Log:
    def __init__(self, salt: bytes = b"") -> None:
        self.frontier, self.nodes, self.salt = Frontier(), {}, salt

    def grow(self, n: int) -> str:
        for _ in range(n):
            for level, index, h in self.frontier.append(leaf_hash(self.salt + self.frontier.size.to_bytes(8, "big"))):
                self.nodes[(level, index)] = h
        return KEY.sign(Checkpoint("claiim/test", self.frontier.size, self.frontier.root()))

    def proof(self, first: int, second: int) -> list[bytes]:
        return proof_from(consistency_ranges(first, second), self.nodes)


def test_each_newer_checkpoint_is_trusted_with_its_consistency_proof() -> None:
    log, trust = Log(), TrustedCheckpoints(KEY.verifier)
    assert trust.update(log.grow(3)).size == 3  # trusted on first use
    note = log.grow(5)
    newer = trust.open(note)
    assert trust.proof_needed(newer) == (3, 8)
    assert trust.update(note, log.proof(3, 8)).size == 8
    assert trust.trusted is not None and trust.trusted.size == 8


@pytest.mark.parametrize(("make", "problem"), [
    (lambda log, other: (other.grow(12), other.proof(8, 12)), "not-extending"),
    (lambda log, other: (other.grow(8), []), "fork"),
    (lambda log, other: (other.grow(5), []), "shrank"),
    (lambda log, other: (Signer.from_seed("claiim-test", b"\x01" * 32).sign(
        Checkpoint("claiim/test", 9, bytes(32))), []), "bad-signature"),
])
def test_a_checkpoint_that_does_not_follow_is_refused_and_trust_stays(make, problem) -> None:  # type: ignore[no-untyped-def]
    log, other, trust = Log(), Log(salt=b"rewritten"), TrustedCheckpoints(KEY.verifier)
    trust.update(log.grow(8))
    note, proof = make(log, other)
    with pytest.raises(TrustError) as info:
        trust.update(note, proof)
    assert info.value.problem == problem
    assert trust.trusted is not None and (trust.trusted.size, trust.trusted.root) == (8, log.frontier.root())
