"""Self-contained proof bundles and their offline verification.

An inclusion proof holds the leaf's bytes (the event exactly as stored and hashed), its index,
the audit path and a signed checkpoint: with the log's public key alone anyone can check that
this event is leaf ``leaf_index`` of the tree that the key signed. A consistency proof holds two
signed checkpoints and the proof that the later tree extends the earlier one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from claiim_core.checkpoint import Checkpoint, CheckpointError, Verifier
from claiim_core.merkle import leaf_hash, verify_consistency, verify_inclusion

INCLUSION_FORMAT = "claiim-inclusion-proof/1"
CONSISTENCY_FORMAT = "claiim-consistency-proof/1"


class LeafBatch(Struct, frozen=True, forbid_unknown_fields=True):
    """One message of Chron's proofs feed (``<ns>.chron.leaves``, and a line of the mirror's
    ``leaves.jsonl``): leaves ``first`` to ``first + len(leaves) - 1`` as ``[chron id, leaf hash
    (hex)]`` pairs."""

    first: Annotated[int, Meta(ge=0)]
    leaves: Annotated[list[tuple[str, str]], Meta(min_length=1, max_length=1000)]

    @classmethod
    def of(cls, first: int, leaves: list[tuple[str, bytes]]) -> LeafBatch:
        return cls(first, [(chron_id, h.hex()) for chron_id, h in leaves])

    @classmethod
    def decode(cls, data: bytes) -> LeafBatch:
        """Raises ``msgspec.DecodeError`` or ``msgspec.ValidationError`` for anything else."""
        return msgspec.json.decode(data, type=cls)

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    def pairs(self) -> list[tuple[str, bytes]]:
        """The leaves as ``(chron id, leaf hash)``."""
        return [(chron_id, bytes.fromhex(h)) for chron_id, h in self.leaves]

    @property
    def end(self) -> int:
        """The first leaf after this batch."""
        return self.first + len(self.leaves)


class ProofError(ValueError):
    """The proof does not hold; the message says which part failed."""


class InclusionProof(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str = INCLUSION_FORMAT
    chron_id: str
    leaf_index: int
    leaf: str
    """The leaf's bytes, base64."""
    tree_size: int
    audit_path: list[str]
    """Hex hashes, deepest first (RFC 9162 PATH)."""
    checkpoint: str
    """The signed note of a tree of ``tree_size`` leaves."""


class ConsistencyProof(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str = CONSISTENCY_FORMAT
    first: str
    """The signed note of the smaller tree."""
    second: str
    proof: list[str]
    """Hex hashes (RFC 9162 PROOF)."""


@dataclass(frozen=True)
class ProvenLeaf:
    checkpoint: Checkpoint
    leaf_index: int
    event: dict[str, Any]


def _hashes(values: list[str]) -> list[bytes]:
    try:
        out = [bytes.fromhex(v) for v in values]
    except ValueError as e:
        raise ProofError(f"a proof hash is not hex: {e}") from e
    if any(len(h) != 32 for h in out):
        raise ProofError("a proof hash is not 32 bytes")
    return out


def _open(verifier: Verifier, note: str, what: str) -> Checkpoint:
    try:
        return verifier.open(note)
    except CheckpointError as e:
        raise ProofError(f"{what}: {e}") from e


def check_inclusion(proof: InclusionProof, verifier: Verifier) -> ProvenLeaf:
    """Verify an inclusion proof with nothing but the log's public key; raises :class:`ProofError`."""
    if proof.format != INCLUSION_FORMAT:
        raise ProofError(f"unknown proof format {proof.format!r}")
    checkpoint = _open(verifier, proof.checkpoint, "checkpoint")
    if checkpoint.size != proof.tree_size:
        raise ProofError(f"the checkpoint signs a tree of {checkpoint.size} leaves, the proof is for {proof.tree_size}")
    try:
        data = base64.b64decode(proof.leaf, validate=True)
    except (ValueError, binascii.Error) as e:
        raise ProofError(f"the leaf is not base64: {e}") from e
    if not verify_inclusion(proof.leaf_index, proof.tree_size, leaf_hash(data), _hashes(proof.audit_path),
                            checkpoint.root):
        raise ProofError(f"leaf {proof.leaf_index} is not in the signed tree of {checkpoint.size} leaves "
                         "(leaf bytes, index or audit path altered)")
    try:
        event = msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        raise ProofError(f"the leaf is not a JSON event: {e}") from e
    if not isinstance(event, dict) or proof.chron_id not in (event.get("chron_id"), event.get("event_id")):
        raise ProofError(f"the proven leaf is not record {proof.chron_id}")
    return ProvenLeaf(checkpoint, proof.leaf_index, event)


def check_consistency(proof: ConsistencyProof, verifier: Verifier) -> tuple[Checkpoint, Checkpoint]:
    """Verify that the second signed tree extends the first; raises :class:`ProofError`."""
    if proof.format != CONSISTENCY_FORMAT:
        raise ProofError(f"unknown proof format {proof.format!r}")
    first = _open(verifier, proof.first, "first checkpoint")
    second = _open(verifier, proof.second, "second checkpoint")
    if first.origin != second.origin:
        raise ProofError(f"the checkpoints are of two logs: {first.origin} and {second.origin}")
    if not verify_consistency(first.size, second.size, _hashes(proof.proof), first.root, second.root):
        raise ProofError(f"the tree of {second.size} leaves does not extend the tree of {first.size} leaves (a fork)")
    return first, second
