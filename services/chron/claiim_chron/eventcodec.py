"""How ``chron_events.event`` holds an event's bytes: packed with a preset dictionary (pure).

A Chron event is a few hundred bytes of canonical JSON, too small for PostgreSQL's TOAST
compression, and most of it (field names, the schema, the MAC's algorithm, the reason texts) is the
same in every event. Zstandard (RFC 8878) primed with a dictionary of those strings stores it in
a fraction of its size, in a few microseconds. The stored form says which way it is stored by its
first byte:

- ``{``: the event's bytes as they are (rows stored before packing, and events that packing would
  not make smaller);
- ``0x01``: one Zstandard frame without its magic number, dictionary id or checksum (the leaf hash
  checks the bytes), with its content size, compressed with dictionary version 1,
  :data:`DICTIONARY_V1`, as raw content.

Only the stored form changes: the leaf hash, the MAC or signature, proofs, ``chron show`` and
exports are all over the event's original bytes, which :func:`unpack` gives back exactly. Another
Zstandard build may pack an event to other bytes; both unpack to the same event.

A dictionary, once released, never changes: the rows packed with it are read with it for ever. A
better dictionary is added as a new one with a new format byte, next to the old ones.

This module does no I/O and knows nothing of PostgreSQL; what to do with a stored form that does
not unpack (``claiim chron verify`` reports the row as modified) is its callers' business.
"""

from __future__ import annotations

import threading

import zstandard as zstd

__all__ = ["DICTIONARY_V1", "MAX_EVENT_BYTES", "EventCodecError", "pack", "pack_many", "unpack"]

MAX_EVENT_BYTES = 1 << 20
"""The largest event :func:`unpack` gives back (bytes): NATS's ``max_payload`` as claiim configures it.
A stored form that says it unpacks to more is refused (a decompression bomb), so :func:`pack` stores a
larger event as it is."""

_RAW = b"{"
_ZSTD_V1 = b"\x01"
_LEVEL = 3
"""Zstandard's level: 7.6 µs and 252 bytes for a demo decision here, where level 7 took 13.8 µs for 239."""
_FORMAT = zstd.FORMAT_ZSTD1_MAGICLESS

DICTIONARY_V1 = (
    # Control events: the rarer kind, so the farther from the end.
    b'"approval_id":"chr_01","agent_id":"","request_hash":"sha256:","reason":"'
    b'"proposal_id":"chr_01","summary":[],"events":[],"change_hash":"sha256:","base":{},"approvals_required":1,'
    b'"expires_at":"2026-"type":"proposal.created"proposal.approved"approval.granted"approval.refused"'
    b'"agent.suspended"agent.reactivated"agent.token-rotated"agent.token-revoked"agent.updated"admin.enrolled"'
    b'"role":"admin"auditor"anchor","token_hash":"sha256:'
    b'{"actor":"operator","at":"2026-01-01T00:00:00.000000Z","auth":{"alg":"ed25519","key":"claiim-control+",'
    b'"prev":0,"sig":"=="},"description":"","document":{"allow":["deploy:staging"],"deny":["deploy:production"],'
    b'"skill":"-v1"},"event_id":"chr_01","name":"","org":"","schema":"claiim.control/1","type":"policy.published",'
    b'"version":1}'
    b'{"actions":["deploy:"],"actor":"operator","at":"2026-01-01T00:00:00.000000Z","auth":{"alg":"ed25519",'
    b'"key":"claiim-control+","prev":0,"sig":"=="},"agent_id":"","anchor":"","content_hash":"sha256:",'
    b'"description":"","event_id":"chr_01","name":"","org":"","policy":"-v1","schema":"claiim.control/1",'
    b'"skills":["-v1"],"token_hash":"sha256:","type":"agent.registered","version":1}'
    # Decisions: the fields and texts of the rarer ones, then a denial, then an allowed action last.
    b'"shadow":{"outcome":"DENY","policy":"-v2","rule":"default-deny"},"trace_id":"'
    b'"approval":{"approver":"anchor","expires_at":"2026-","id":"chr_01","request_hash":"sha256:"},'
    b'"outcome":"PENDING","reason":"policy:-v1 -- action needs approval","rule":"approve[0]: '
    b'"reason":"skill: -- action outside the agent\'s skills"'
    b'"reason":"auth:bad-token -- token does not match agent ","rule":"authenticate"'
    b'"reason":"policy:-v1 -- action not in allow list","request_id":null,"rule":"default-deny"'
    b'{"action":"deploy:production","agent_id":"","anchor":"","auth":{"alg":"hmac-sha256","key":"embedded","sig":"'
    b'="},"chron_id":"chr_01","context":{},"control_seq":1,"decided_at":"2026-01-01T00:00:00.000000Z","gate":"",'
    b'"org":"","outcome":"DENY","policy":"-v1","reason":"policy:-v1 -- action explicitly denied","request_id":"",'
    b'"rule":"deny[0]: deploy:production","schema":"claiim.decision/1","skill":"-v1","target":"prod"}'
    b'{"action":"deploy:staging","agent_id":"-agent","anchor":"","auth":{"alg":"hmac-sha256","key":"-gate","sig":"'
    b'="},"chron_id":"chr_01","context":{"":""},"control_seq":1,"decided_at":"2026-01-01T00:00:00.000000Z",'
    b'"gate":"","org":"","outcome":"ALLOW","policy":"-v1","reason":"policy:-v1 -- action allowed","request_id":"",'
    b'"rule":"allow[0]: deploy:staging","schema":"claiim.decision/1","skill":"-v1","target":""}'
)
"""Dictionary version 1 (format byte ``0x01``): strings of canonical decision and control events,
the most common last, where the compressor reaches them with the shortest distances. Never change it."""


class EventCodecError(ValueError):
    """A stored event that does not unpack: an unknown format byte, or a corrupt, truncated or
    oversized packed frame."""


class _Codecs(threading.local):
    """Zstandard's compressor and decompressor are not safe to share between threads: one pair each."""

    def __init__(self) -> None:
        dictionary = zstd.ZstdCompressionDict(DICTIONARY_V1, dict_type=zstd.DICT_TYPE_RAWCONTENT)
        dictionary.precompute_compress(level=_LEVEL)
        self.compressor = zstd.ZstdCompressor(dict_data=dictionary, compression_params=(
            zstd.ZstdCompressionParameters.from_level(_LEVEL, format=_FORMAT, write_checksum=0, write_content_size=1,
                                                      write_dict_id=0)))
        self.decompressor = zstd.ZstdDecompressor(dict_data=dictionary, format=_FORMAT)


_codecs = _Codecs()


def pack(data: bytes) -> bytes:
    """The stored form of an event's bytes (deterministic). An event starting with ``{`` is stored as
    it is when packing does not make it smaller, or when it is larger than :data:`MAX_EVENT_BYTES`."""
    raw = data[:1] == _RAW
    if len(data) > MAX_EVENT_BYTES:
        if raw:
            return data
        raise EventCodecError(f"an event of {len(data):,} bytes that is not a JSON object cannot be stored "
                              f"(the limit is {MAX_EVENT_BYTES:,})")
    packed = _ZSTD_V1 + _codecs.compressor.compress(data)
    return data if raw and len(packed) >= len(data) else packed


def pack_many(events: list[bytes]) -> list[bytes]:
    """:func:`pack` of each event, the same bytes, in one call to the compressor for all of them: each call
    lets go of the GIL, and a thread that wants it then keeps it for up to 5 ms (packing 1,000 events took
    122 ms beside a busy thread one at a time, 13 ms together)."""
    small = [i for i, data in enumerate(events) if 0 < len(data) <= MAX_EVENT_BYTES]
    chosen = set(small)
    packed = [data if i in chosen else pack(data) for i, data in enumerate(events)]  # empty, or too large
    if small:
        frames = _codecs.compressor.multi_compress_to_buffer([events[i] for i in small], threads=0)
        for n, i in enumerate(small):
            frame = _ZSTD_V1 + frames[n].tobytes()
            raw = events[i][:1] == _RAW
            packed[i] = events[i] if raw and len(frame) >= len(events[i]) else frame
    return packed


def unpack(stored: bytes) -> bytes:
    """The event's original bytes from its stored form; raises :class:`EventCodecError`."""
    head = stored[:1]
    if head == _RAW:
        return stored
    if head != _ZSTD_V1:
        raise EventCodecError(f"unknown stored event format (first byte {head.hex() or 'none: empty'})")
    frame = stored[1:]
    try:
        size = zstd.get_frame_parameters(frame, format=_FORMAT).content_size
    except zstd.ZstdError as e:
        raise EventCodecError(f"corrupt packed event: {e}") from None
    if size in (zstd.CONTENTSIZE_UNKNOWN, zstd.CONTENTSIZE_ERROR):
        raise EventCodecError("corrupt packed event: its frame does not say its size")
    if size > MAX_EVENT_BYTES:
        raise EventCodecError(f"the packed event unpacks to more than {MAX_EVENT_BYTES:,} bytes")
    inflate = _codecs.decompressor.decompressobj()
    try:
        data = inflate.decompress(frame)
    except zstd.ZstdError as e:
        raise EventCodecError(f"corrupt packed event: {e}") from None
    if not inflate.eof:
        raise EventCodecError("truncated packed event: the frame does not end")
    if inflate.unused_data:
        raise EventCodecError(f"corrupt packed event: {len(inflate.unused_data)} bytes after the frame")
    if len(data) != size:
        raise EventCodecError(f"corrupt packed event: {len(data)} bytes, where its frame says {size}")
    return data
