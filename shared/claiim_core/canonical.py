"""The one canonical encoding that claiim hashes and stores.

Canonical form: JSON, UTF-8, no insignificant white space, object keys sorted by Unicode code
point, no floating-point numbers (times are RFC 3339 strings, counters are integers). This equals
RFC 8785 (JCS) except in one corner: JCS sorts keys by UTF-16 code units, which orders differently
only when keys mix characters above U+FFFF with characters in U+E000-U+FFFF. Golden vectors in
``tests/unit/golden/`` are checked byte for byte.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(order="sorted")


def canonical_bytes(value: Any) -> bytes:
    """Encode a msgspec Struct, dict, list or scalar in canonical form."""
    return _encoder.encode(value)
