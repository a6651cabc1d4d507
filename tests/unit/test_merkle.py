"""The Merkle tree against RFC 6962's reference vectors, and proof properties over random trees."""

from __future__ import annotations

import pytest
from claiim_core.merkle import (
    EMPTY_ROOT,
    Frontier,
    Node,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    nodes_for,
    proof_from,
    root,
    verify_consistency,
    verify_inclusion,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# The Certificate Transparency reference inputs and tree heads (certificate-transparency-go, RFC 6962).
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, audit path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [  # (first size, second size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def build(data: list[bytes]) -> tuple[Frontier, dict[Node, bytes]]:
    """A tree and every complete node it stored, built by appending as Chron does."""
    frontier, nodes = Frontier(), {}
    for d in data:
        for level, index, h in frontier.append(leaf_hash(d)):
            nodes[(level, index)] = h
    return frontier, nodes


def inclusion(index: int, size: int, nodes: dict[Node, bytes]) -> list[bytes]:
    ranges = inclusion_ranges(index, size)
    assert nodes_for(ranges) <= nodes.keys()
    return proof_from(ranges, nodes)


def consistency(first: int, second: int, nodes: dict[Node, bytes]) -> list[bytes]:
    return proof_from(consistency_ranges(first, second), nodes)


def test_roots_match_the_reference_for_every_size() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0] == Frontier().root().hex()
    for size in range(1, 9):
        frontier, nodes = build(LEAVES[:size])
        assert frontier.root().hex() == ROOTS[size]
        assert root(size, nodes).hex() == ROOTS[size]
    _, nodes = build(LEAVES)
    assert [root(size, nodes).hex() for size in range(1, 9)] == ROOTS[1:]  # past roots from the same nodes


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_proofs_match_the_reference(index: int, size: int, expected: list[str]) -> None:
    _, nodes = build(LEAVES)
    proof = inclusion(index, size, nodes)
    assert [p.hex() for p in proof] == expected
    assert verify_inclusion(index, size, leaf_hash(LEAVES[index]), proof, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("first", "second", "expected"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(first: int, second: int, expected: list[str]) -> None:
    _, nodes = build(LEAVES)
    proof = consistency(first, second, nodes)
    assert [p.hex() for p in proof] == expected
    assert verify_consistency(first, second, proof, bytes.fromhex(ROOTS[first]), bytes.fromhex(ROOTS[second]))


def test_frontier_reloaded_from_stored_nodes_continues_identically() -> None:
    data = [bytes([i]) for i in range(23)]
    whole, nodes = build(data)
    _, first = build(data[:13])
    resumed = Frontier.at(13, first)
    for d in data[13:]:
        resumed.append(leaf_hash(d))
    assert resumed.root() == whole.root() == root(23, nodes)


TREES = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


def flip(b: bytes, bit: int) -> bytes:
    """``b`` with one bit flipped (bit 0 to 8 * len(b) - 1)."""
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


BIT = st.integers(0, 255)


@settings(max_examples=150, deadline=None)
@given(TREES, st.data())
def test_every_inclusion_proof_verifies_and_any_flipped_bit_fails(data: list[bytes], draw: st.DataObject) -> None:
    size = len(data)
    frontier, nodes = build(data)
    index = draw.draw(st.integers(0, size - 1))
    leaf, proof, head = leaf_hash(data[index]), inclusion(index, size, nodes), frontier.root()
    assert verify_inclusion(index, size, leaf, proof, head)
    assert not verify_inclusion(index, size, flip(leaf, draw.draw(BIT)), proof, head)
    assert not verify_inclusion(index, size, leaf, proof, flip(head, draw.draw(BIT)))
    if proof:
        at = draw.draw(st.integers(0, len(proof) - 1))
        assert not verify_inclusion(index, size, leaf, [*proof[:at], flip(proof[at], draw.draw(BIT)),
                                                        *proof[at + 1:]], head)
        assert not verify_inclusion(index, size, leaf, proof[:-1], head)
        assert not verify_inclusion(index, size, leaf, [*proof, proof[-1]], head)


@settings(max_examples=150, deadline=None)
@given(TREES, st.data())
def test_every_consistency_proof_verifies_and_any_flipped_bit_fails(data: list[bytes], draw: st.DataObject) -> None:
    second = len(data)
    first = draw.draw(st.integers(1, second))
    _, nodes = build(data)
    r1, r2 = root(first, nodes), root(second, nodes)
    proof = consistency(first, second, nodes)
    assert verify_consistency(first, second, proof, r1, r2)
    assert not verify_consistency(first, second, proof, flip(r1, draw.draw(BIT)), r2)
    assert not verify_consistency(first, second, proof, r1, flip(r2, draw.draw(BIT)))
    if proof:
        i = draw.draw(st.integers(0, len(proof) - 1))
        assert not verify_consistency(first, second, [*proof[:i], flip(proof[i], draw.draw(BIT)), *proof[i + 1:]],
                                      r1, r2)


@settings(max_examples=100, deadline=None)
@given(TREES, st.data())
def test_a_changed_leaf_gives_another_root_and_breaks_consistency(data: list[bytes], draw: st.DataObject) -> None:
    """Rewriting history: any changed leaf below a signed size fails consistency with the signed root."""
    first = draw.draw(st.integers(1, len(data)))
    i = draw.draw(st.integers(0, first - 1))
    _, honest = build(data)
    forged = [*data[:i], data[i] + b"!", *data[i + 1:]]
    _, nodes = build(forged)
    assert root(first, nodes) != root(first, honest)
    proof = consistency(first, len(data), nodes)
    assert not verify_consistency(first, len(data), proof, root(first, honest), root(len(data), nodes))


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0)])
def test_out_of_range_proofs_are_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        inclusion_ranges(index, size)
    assert not verify_inclusion(index, size, EMPTY_ROOT, [], EMPTY_ROOT)


def test_a_proofs_feed_batch_reads_what_chron_has_always_written() -> None:
    """The feed's message type decodes the JSON shape the feed carries, and writes it back unchanged."""
    import json

    from claiim_core.proofs import LeafBatch

    h = leaf_hash(b"x")
    written = json.dumps({"first": 7, "leaves": [["chr_a", h.hex()]]}, separators=(",", ":")).encode()
    batch = LeafBatch.decode(written)
    assert (batch.first, batch.pairs(), batch.end) == (7, [("chr_a", h)], 8)
    assert LeafBatch.of(7, [("chr_a", h)]).encode() == written
