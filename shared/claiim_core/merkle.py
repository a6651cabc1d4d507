"""Chron's Merkle tree: RFC 6962 / RFC 9162 hashing, proofs and their verification.

leaf = SHA-256(0x00 || bytes), node = SHA-256(0x01 || left || right). The tree over n leaves is
RFC 6962's MTH: split at the largest power of two below n.

Storage model: every *complete* subtree is a node ``(level, index)`` covering leaves
``[index * 2**level, (index + 1) * 2**level)``. A node never changes once its subtree is
complete, so nodes are written once, in append order. Any range the proofs need is a
concatenation of O(log n) such nodes (:func:`range_nodes`), so roots and proofs cost
O(log n) node reads, never a scan of the log: the functions here first say which nodes they
need (``*_nodes``), then build the answer from a mapping that holds them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Node = tuple[int, int]
"""``(level, index)`` of a complete subtree."""

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def range_nodes(lo: int, hi: int) -> list[Node]:
    """The complete subtrees that make up leaves ``[lo, hi)``, left to right, largest first.

    For the ranges MTH's recursion produces (every ``lo`` aligned to the split below it), folding
    these from the right gives MTH of the range (:func:`fold`).
    """
    out: list[Node] = []
    while lo < hi:
        level = (lo & -lo).bit_length() - 1 if lo else (hi - lo).bit_length()
        while lo + (1 << level) > hi:
            level -= 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def fold(hashes: list[bytes]) -> bytes:
    """Combine subtree hashes, left to right, into the hash of their concatenation (right fold)."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_nodes(size: int) -> list[Node]:
    """The nodes whose fold is the root of a tree of ``size`` leaves (its "peaks")."""
    return range_nodes(0, size)


def root(size: int, nodes: Mapping[Node, bytes]) -> bytes:
    return fold([nodes[n] for n in root_nodes(size)])


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form the audit path of leaf ``index`` (RFC 9162 PATH)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    out: list[tuple[int, int]] = []

    def path(lo: int, hi: int) -> None:
        if hi - lo <= 1:
            return
        k = _split(hi - lo)
        if index < lo + k:
            path(lo, lo + k)
            out.append((lo + k, hi))
        else:
            path(lo + k, hi)
            out.append((lo, lo + k))

    path(0, size)
    return out


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form the consistency proof from ``first`` to ``second`` (RFC 9162 PROOF)."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    out: list[tuple[int, int]] = []

    def sub(m: int, lo: int, hi: int, whole: bool) -> None:
        if m == hi - lo:
            if not whole:
                out.append((lo, hi))
            return
        k = _split(hi - lo)
        if m <= k:
            sub(m, lo, lo + k, whole)
            out.append((lo + k, hi))
        else:
            sub(m - k, lo + k, hi, False)
            out.append((lo, lo + k))

    if 0 < first < second:
        sub(first, 0, second, True)
    return out


def nodes_for(ranges: Iterable[tuple[int, int]]) -> set[Node]:
    return {n for lo, hi in ranges for n in range_nodes(lo, hi)}


def proof_from(ranges: list[tuple[int, int]], nodes: Mapping[Node, bytes]) -> list[bytes]:
    return [fold([nodes[n] for n in range_nodes(lo, hi)]) for lo, hi in ranges]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root_hash: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show leaf hash ``leaf`` at ``index`` in the tree ``root_hash``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root_hash)


def verify_consistency(first: int, second: int, proof: list[bytes], first_root: bytes, second_root: bytes) -> bool:
    """RFC 9162 §2.1.4.2: is the tree ``second_root`` an append-only extension of ``first_root``?"""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and hmac.compare_digest(first_root, second_root)
    if first == 0:
        return not proof
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, first_root) and hmac.compare_digest(sr, second_root)


@dataclass
class Frontier:
    """The right edge of a growing tree: the peaks of its current size.

    :meth:`append` returns every node that becomes complete, so a writer can store them once
    and never read them back to append. Memory is O(log n).
    """

    size: int = 0
    peaks: list[tuple[int, bytes]] = field(default_factory=list)
    """``(level, hash)`` of each peak, left to right (levels strictly decreasing)."""

    @classmethod
    def at(cls, size: int, nodes: Mapping[Node, bytes]) -> Frontier:
        """The frontier of a stored tree of ``size`` leaves, from its :func:`root_nodes`."""
        return cls(size, [(level, nodes[(level, index)]) for level, index in root_nodes(size)])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; returns the new complete nodes ``(level, index, hash)``, the leaf first."""
        level, index, h = 0, self.size, leaf
        new = [(0, index, leaf)]
        while self.peaks and self.peaks[-1][0] == level:
            _, left = self.peaks.pop()
            h = node_hash(left, h)
            level += 1
            index >>= 1
            new.append((level, index, h))
        self.peaks.append((level, h))
        self.size += 1
        return new

    def root(self) -> bytes:
        return fold([h for _, h in self.peaks])

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.peaks))
