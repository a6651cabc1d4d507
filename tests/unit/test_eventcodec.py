"""The stored form of Chron's events: every event comes back byte for byte, real events shrink, and
a stored form that is not one gives a clear error instead of bytes."""

from __future__ import annotations

import hashlib
import zlib

import msgspec
import pytest
import zstandard as zstd
from claiim_chron.eventcodec import DICTIONARY_V1, MAX_EVENT_BYTES, EventCodecError, pack, pack_many, unpack
from claiim_core.checkpoint import Signer
from claiim_core.eventauth import GateKey, seal_control, seal_decision
from claiim_core.events import AgentRegistered
from claiim_core.schemas import DecisionEvent
from hypothesis import given
from hypothesis import strategies as st

DICTIONARY_V1_SHA256 = "5e4d58cd5224a739aec4c17affedecd7c0ee173fcdbb02b5aac0738b319541f8"
"""Dictionary version 1 as released: rows packed with it are read with it for ever."""


def decision() -> bytes:
    """A decision as the gate seals it (canonical JSON with its MAC), shaped like the demo's."""
    event = DecisionEvent(chron_id="chr_01m8g988aw4yhtp50gwkgptc3f", decided_at="2026-11-28T05:15:08.508570Z",
                          outcome="ALLOW", reason="policy:no-prod-v1 -- action allowed",
                          rule="allow[0]: deploy:staging", org="demo", agent_id="deploy-bot", anchor="s.emp1",
                          action="deploy:staging", target="api-v2",
                          context={"pipeline": "api-v2/main#1234", "ticket": "CHG-4711"},
                          request_id="cf6a575032d2559be7b096c0", policy="no-prod-v1", skill="deploy-v2",
                          gate="gate-1", control_seq=9)
    return seal_decision(event, GateKey("gate-a", bytes(range(32))))


def control() -> bytes:
    event = AgentRegistered(event_id="chr_01m8g9887rna3k50cftk7kbq9k", at="2026-11-28T05:15:08.408205Z",
                            actor="operator", org="demo", agent_id="deploy-bot", anchor="s.emp1",
                            description="Deploys to staging.", skills=("deploy-v2",), policy="no-prod-v1",
                            token_hash="sha256:" + "ab" * 32)
    return seal_control(event, 0, Signer.from_seed("claiim-control", bytes(32)))


def test_the_released_dictionary_never_changes() -> None:
    """Dictionary version 1 is byte for byte the one rows were packed with."""
    assert hashlib.sha256(DICTIONARY_V1).hexdigest() == DICTIONARY_V1_SHA256


@pytest.mark.parametrize("event", [decision(), control()], ids=["decision", "control"])
def test_a_real_event_is_packed_and_comes_back(event: bytes) -> None:
    """A sealed event is stored in format 1, deterministically, and unpacks to its exact bytes."""
    stored = pack(event)
    assert stored[:1] == b"\x01" and stored == pack(event)
    assert unpack(stored) == event


def test_a_decision_shrinks_below_forty_five_percent() -> None:
    """The dictionary does what it is for: a sealed decision takes less than 45 % of its bytes."""
    event = decision()
    assert len(pack(event)) < 0.45 * len(event), (len(pack(event)), len(event))


def test_the_dictionary_beats_plain_deflate() -> None:
    """Packing a control event with the dictionary is much smaller than DEFLATE at its best without it."""
    event = control()
    plain = zlib.compressobj(9, zlib.DEFLATED, -15)
    assert len(pack(event)) < 0.75 * len(plain.compress(event) + plain.flush())


def test_a_raw_json_row_reads_as_it_is() -> None:
    """A row stored before packing (its bytes start with ``{``) is its own event."""
    event = decision()
    assert unpack(event) == event


@given(st.binary().map(lambda b: b"{" + b))
def test_any_json_like_bytes_round_trip(data: bytes) -> None:
    """Bytes starting with ``{`` come back exactly, stored raw only when packing would not shrink them."""
    stored = pack(data)
    assert unpack(stored) == data
    assert len(stored) <= len(data)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)
       .map(lambda value: msgspec.json.encode({"value": value, "schema": "claiim.decision/1"}, order="sorted")))
def test_any_canonical_json_round_trips(data: bytes) -> None:
    """Canonical JSON objects of any shape come back byte for byte."""
    assert unpack(pack(data)) == data


@given(st.binary())
def test_any_bytes_round_trip(data: bytes) -> None:
    """Even bytes that are not a JSON object come back: they are always packed, so never mistaken for a format."""
    stored = pack(data)
    assert unpack(stored) == data
    if data[:1] != b"{":
        assert stored[:1] == b"\x01"


def test_an_incompressible_json_object_is_stored_raw() -> None:
    """Packing never makes a JSON object bigger: one that does not shrink is stored as it is."""
    for data in (b"{}", b'{"n":7}'):
        assert pack(data) == data


@pytest.mark.parametrize(("stored", "message"), [
    (b"", "unknown stored event format"),
    (b"\x02" + b"\x00" * 10, r"unknown stored event format \(first byte 02\)"),
    (b"[1,2]", r"unknown stored event format \(first byte 5b\)"),
    (b"\x01\xff\xff\xff\xff", "corrupt packed event"),
    (pack(decision()) + b"junk", "4 bytes after the frame"),
    (pack(decision())[:-8], "truncated packed event"),
    (b"\x01", "corrupt packed event"),
])
def test_a_stored_form_that_is_not_one_is_refused(stored: bytes, message: str) -> None:
    """An unknown format byte, a corrupt, truncated or padded stream raise EventCodecError, a ValueError."""
    with pytest.raises(EventCodecError, match=message):
        unpack(stored)
    assert issubclass(EventCodecError, ValueError)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_a_changed_stored_form_raises_or_gives_bytes_for_the_leaf_hash_to_judge(at: int, flip: int) -> None:
    """A changed byte anywhere in a packed event never crashes unpacking (only EventCodecError escapes) and never
    gives more than MAX_EVENT_BYTES. Some bits of a frame change nothing in the event: the stored form is not
    tamper-evident by itself, the leaf hash over the event is (verify's tests)."""
    stored = bytearray(pack(decision()))
    stored[1 + at % (len(stored) - 1)] ^= flip
    try:
        data = unpack(bytes(stored))
    except EventCodecError:
        return
    assert len(data) <= MAX_EVENT_BYTES


def _frame(data: bytes, *, content_size: bool = True) -> bytes:
    """A frame as :func:`pack` writes one, for a stored form ``pack`` itself would never make."""
    params = zstd.ZstdCompressionParameters.from_level(3, format=zstd.FORMAT_ZSTD1_MAGICLESS, write_checksum=0,
                                                       write_content_size=int(content_size), write_dict_id=0)
    dictionary = zstd.ZstdCompressionDict(DICTIONARY_V1, dict_type=zstd.DICT_TYPE_RAWCONTENT)
    compressor = zstd.ZstdCompressor(dict_data=dictionary, compression_params=params)
    if content_size:
        return b"\x01" + compressor.compress(data)
    writer = compressor.chunker(chunk_size=1 << 16)  # streamed: the frame cannot say its size
    return b"\x01" + b"".join([*writer.compress(data), *writer.finish()])


def test_a_decompression_bomb_is_refused() -> None:
    """A tiny stored form that would unpack to more than MAX_EVENT_BYTES is refused without unpacking it, and
    so is a frame that does not say its size."""
    bomb = _frame(b"{" + b" " * (64 * MAX_EVENT_BYTES))
    assert len(bomb) < MAX_EVENT_BYTES // 8
    with pytest.raises(EventCodecError, match="more than 1,048,576 bytes"):
        unpack(bomb)
    with pytest.raises(EventCodecError, match="does not say its size"):
        unpack(_frame(decision(), content_size=False))
    assert unpack(_frame(decision())) == decision()


def test_an_event_of_the_largest_size_round_trips() -> None:
    """The limit is inclusive, and a larger JSON object is stored raw rather than packed past it."""
    largest = b'{"x":"' + b"a" * (MAX_EVENT_BYTES - 8) + b'"}'
    assert len(largest) == MAX_EVENT_BYTES and unpack(pack(largest)) == largest
    larger = largest + b" "
    assert pack(larger) == larger
    with pytest.raises(EventCodecError, match="cannot be stored"):
        pack(b"[" + larger)


@given(st.lists(st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: b"{" + b), max_size=20))
def test_packing_many_gives_what_packing_each_gives(events: list[bytes]) -> None:
    """pack_many (one compressor call for a batch) stores each event exactly as pack does, empty ones included."""
    assert pack_many(events) == [pack(e) for e in events]
    assert [unpack(p) for p in pack_many(events)] == events


def test_packing_many_stores_a_too_large_json_object_raw() -> None:
    larger = b'{"x":"' + b"a" * MAX_EVENT_BYTES + b'"}'
    assert pack_many([decision(), larger]) == [pack(decision()), larger]
