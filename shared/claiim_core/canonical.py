"""The one canonical encoding that claiim hashes and stores.

Canonical form: JSON, UTF-8, no insignificant white space, object keys sorted by code point,
no floating-point numbers (times are RFC 3339 strings, counters are integers). For these value
types the output equals RFC 8785 (JSON Canonicalization Scheme). Golden vectors in
``tests/unit/golden/`` are checked byte for byte.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(order="sorted")


def canonical_bytes(value: Any) -> bytes:
    """Encode a msgspec Struct, dict, list or scalar in canonical form."""
    return _encoder.encode(value)
