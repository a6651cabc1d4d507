"""Which checkpoint of a log is trusted, and the one rule a newer one must pass: it carries the log's
signature and its tree extends the trusted tree (the same root at the same size, or a consistency
proof from the trusted tree to it). A log that shrank, two roots for one size, or a proof that does
not hold is refused, and the trusted checkpoint stays where it was.

Pure: fed notes and proof hashes, it asks nothing. Chron checks its own tree with :func:`check_extends`
before it signs; the admin UI's monitor feeds :class:`TrustedCheckpoints` what Chron lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from claiim_core.checkpoint import Checkpoint, CheckpointError, Verifier
from claiim_core.merkle import verify_consistency

Problem = Literal["bad-signature", "shrank", "fork", "not-extending"]


class TrustError(ValueError):
    """A checkpoint or tree that does not follow the trusted one; ``problem`` says how."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def check_extends(trusted: Checkpoint, size: int, root: bytes, proof: Sequence[bytes]) -> None:
    """Raise :class:`TrustError` unless the tree of ``size`` leaves and ``root`` extends ``trusted``:
    at the same size the same root, at a larger size a consistency ``proof`` (RFC 6962) from it."""
    if size < trusted.size:
        raise TrustError("shrank", f"the log shrank: tree size {size} is smaller than the trusted {trusted.size}")
    if size == trusted.size:
        if root != trusted.root:
            raise TrustError("fork", f"fork: two roots for tree size {size}")
        return
    if not verify_consistency(trusted.size, size, list(proof), trusted.root, root):
        raise TrustError("not-extending", f"the tree of {size} leaves does not extend the trusted tree of "
                                          f"{trusted.size} leaves (a fork)")


class TrustedCheckpoints:
    """The newest checkpoint of one log verified so far. The first one accepted is trusted on its
    signature alone (trust on first use); each later one must extend it."""

    def __init__(self, verifier: Verifier, trusted: Checkpoint | None = None) -> None:
        self.verifier = verifier
        self.trusted = trusted

    def open(self, note: str) -> Checkpoint:
        """The checkpoint in ``note`` if the log's key signed it; raises :class:`TrustError`."""
        try:
            return self.verifier.open(note)
        except CheckpointError as e:
            raise TrustError("bad-signature", f"checkpoint signature: {e}") from e

    def proof_needed(self, checkpoint: Checkpoint) -> tuple[int, int] | None:
        """The tree sizes of the consistency proof :meth:`update` needs for ``checkpoint``, or None."""
        if self.trusted is None or checkpoint.size <= self.trusted.size:
            return None
        return self.trusted.size, checkpoint.size

    def update(self, note: str, proof: Sequence[bytes] = ()) -> Checkpoint:
        """Trust the checkpoint in ``note`` from now on, if it is signed and extends the trusted one
        (``proof``: the consistency proof :meth:`proof_needed` names); raises :class:`TrustError` and
        keeps the trusted checkpoint otherwise."""
        checkpoint = self.open(note)
        if self.trusted is not None:
            check_extends(self.trusted, checkpoint.size, checkpoint.root, proof)
        self.trusted = checkpoint
        return checkpoint
