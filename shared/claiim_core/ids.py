"""Time-sortable identifiers: ULIDs (48-bit millisecond time, 80 random bits, Crockford base32).

Chron ids are ``chr_`` followed by a lower-case ULID, so they sort by creation time.
"""

from __future__ import annotations

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def ulid(unix_ms: int, randomness: bytes) -> str:
    """Encode a ULID from a millisecond timestamp and 10 random bytes (26 characters)."""
    if not 0 <= unix_ms < 1 << 48:
        raise ValueError("unix_ms out of range for a ULID")
    if len(randomness) != 10:
        raise ValueError("a ULID needs exactly 10 random bytes")
    value = (unix_ms << 80) | int.from_bytes(randomness, "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def chron_id(unix_ms: int, randomness: bytes) -> str:
    """A Chron record id: ``chr_`` + ULID."""
    return "chr_" + ulid(unix_ms, randomness)


def ulid_time_ms(value: str) -> int:
    """The millisecond timestamp inside a ULID or chron id."""
    text = value.removeprefix("chr_")
    if len(text) != 26:
        raise ValueError(f"not a ULID: {value!r}")
    n = 0
    for ch in text[:10]:
        n = n * 32 + _ALPHABET.index(ch.lower())
    return n


def rfc3339(unix_us: int) -> str:
    """Format microseconds since the epoch as an RFC 3339 UTC time: ``2026-11-25T21:07:30.123456Z``."""
    from datetime import UTC, datetime, timedelta

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=unix_us)  # exact: no float
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
