"""The archive's segments (pure) and its folder: a segment read back is what was written, and anything else
(another format, a changed leaf, a gap, a truncated file) is refused with the segment named."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest
from claiim_chron.archive import (
    ArchiveError,
    Archiver,
    Folder,
    Segment,
    read_archive,
    segment_name,
    subtree_root,
)
from claiim_chron.rows import Parked
from claiim_chron.store import SegmentLeaf
from claiim_core.merkle import Frontier, leaf_hash, node_hash
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def segment(first: int, size: int, *, parked: bool = False) -> Segment:
    leaves = [SegmentLeaf(i, f"chr_{i:04d}", "decision", "C_DECISIONS", 100 + i, f"c.decision.demo.a.{i}",
                          f'{{"chron_id":"chr_{i:04d}","target":"caf\u00e9\u2028\x85-{i}"}}'.encode()) for i in
              range(first, first + size)]
    parks = [Parked("C_DECISIONS", 100 + first, "c.decision.demo.a.allow", b"\xffnot json", "undecodable")]
    return Segment(first, first + size, subtree_root(leaf.event for leaf in leaves), "claiim/c",
                   {"C_DECISIONS": 100 + first + size - 1}, NOW, ["note one\n", "note two\n"], leaves,
                   parks if parked else [])


def test_a_segment_read_back_is_what_was_written() -> None:
    written = segment(16, 16, parked=True)
    name = segment_name(16, 32)
    read = Segment.decode(name, written.encode())
    assert (read.first, read.end, read.root, read.origin, read.streams, read.newest, read.checkpoints) == (
        16, 32, written.root, "claiim/c", {"C_DECISIONS": 131}, NOW, ["note one\n", "note two\n"])
    assert [(leaf.index, leaf.chron_id, leaf.event) for leaf in read.leaves] == [
        (leaf.index, leaf.chron_id, leaf.event) for leaf in written.leaves]
    assert read.parked == written.parked and read.name == name and read.size == len(written.encode())
    assert written.encode() == written.encode(), "the same segment gives the same bytes"


def test_the_subtree_root_is_rfc_6962s() -> None:
    events = [b"a", b"b", b"c", b"d"]
    h = [leaf_hash(e) for e in events]
    assert subtree_root(events) == node_hash(node_hash(h[0], h[1]), node_hash(h[2], h[3]))
    tree = Frontier()
    for x in h:
        tree.append(x)
    assert subtree_root(events) == tree.root()


@given(st.integers(min_value=0, max_value=15), st.binary(min_size=1, max_size=8))
def test_any_changed_leaf_is_refused(index: int, extra: bytes) -> None:
    s = segment(0, 16)
    leaf = s.leaves[index]
    s.leaves[index] = SegmentLeaf(leaf.index, leaf.chron_id, leaf.kind, leaf.stream, leaf.seq, leaf.subject,
                                  leaf.event + extra.hex().encode())
    with pytest.raises(ArchiveError, match="not to its root"):
        Segment.decode("segments/x", s.encode())


def test_other_files_are_refused_with_their_name() -> None:
    good = segment(0, 16).encode()
    lines = gzip.decompress(good).decode().rstrip("\n").split("\n")
    other = gzip.compress("\n".join([lines[0].replace("claiim-archive-segment/1", "other/9"), *lines[1:]]).encode())
    with pytest.raises(ArchiveError, match="seg-a: not a segment of this format"):
        Segment.decode("seg-a", other)
    with pytest.raises(ArchiveError, match="seg-b: not a readable segment"):
        Segment.decode("seg-b", good[: len(good) // 2])
    missing = gzip.compress("\n".join(lines[:-1]).encode())
    with pytest.raises(ArchiveError, match="seg-c: holds leaves"):
        Segment.decode("seg-c", missing)


def test_a_folder_archive_is_read_in_order_and_a_gap_is_named(tmp_path: Path) -> None:
    folder = Folder(tmp_path / "a")

    async def go() -> None:
        for first in (0, 16, 48):
            await folder.put(segment_name(first, first + 16), segment(first, 16).encode())
        assert await folder.names() == [segment_name(f, f + 16) for f in (0, 16, 48)]
        with pytest.raises(ArchiveError, match=r"no segment for leaves 32\.\.47"):
            await read_archive(folder)
        await folder.put(segment_name(32, 48), segment(32, 16).encode())
        assert [s.first for s in await read_archive(folder)] == [0, 16, 32, 48]
        with pytest.raises(ArchiveError, match="no archive at"):
            await read_archive(Folder(tmp_path / "nowhere"))

    asyncio.run(go())
    assert not list((tmp_path / "a" / "segments").glob(".*")), "no temporary file is left"


def test_a_segment_size_is_a_power_of_two() -> None:
    for size in (0, 8, 24, 100):
        with pytest.raises(ValueError, match="power of two"):
            Archiver(None, Folder(Path(".")), size, "o")  # type: ignore[arg-type]
