"""Time-sortable identifiers: ULIDs (48-bit millisecond time, 80 random bits, Crockford base32).

Chron ids are ``chr_`` followed by a lower-case ULID, so they sort by creation time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
"""Every 10-bit value as its two base32 characters."""


def ulid(unix_ms: int, randomness: bytes) -> str:
    """Encode a ULID from a millisecond timestamp and 10 random bytes (26 characters)."""
    if not 0 <= unix_ms < 1 << 48:
        raise ValueError("unix_ms out of range for a ULID")
    if len(randomness) != 10:
        raise ValueError("a ULID needs exactly 10 random bytes")
    value = (unix_ms << 80) | int.from_bytes(randomness, "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


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


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")
"""The last whole second formatted, and its text (decisions come many to a second)."""


def rfc3339(unix_us: int) -> str:
    """Format microseconds since the epoch as an RFC 3339 UTC time: ``2026-11-25T21:07:30.123456Z``."""
    global _second
    seconds, micros = divmod(unix_us, 1_000_000)
    cached, text = _second
    if seconds != cached:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)  # exact: no float
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        _second = (seconds, text)
    return f"{text}.{micros:06d}Z"
