"""Chron reads each delivery's stream sequence from its reply subject, as nats-py's metadata does."""

from __future__ import annotations

import pytest
from claiim_runtime.streams import stream_seq
from nats.aio.msg import Msg


def _delivery(reply: str) -> Msg:
    return Msg(_client=None, subject="claiim.decisions.x", reply=reply, data=b"")  # type: ignore[arg-type]


@pytest.mark.parametrize("reply", [
    "$JS.ACK.CLAIIM_DECISIONS.chron.1.4711.12.1700000000000000000.3",  # without a domain
    "$JS.ACK._.ACCHASH.CLAIIM_DECISIONS.chron.1.4711.12.1700000000000000000.3.tok",  # with domain and hash
    "$JS.ACK.hub.ACCHASH.CLAIIM_DECISIONS.chron.2.4711.12.1700000000000000000.0",
])
def test_the_stream_sequence_agrees_with_nats_py(reply: str) -> None:
    msg = _delivery(reply)
    assert stream_seq(msg) == msg.metadata.sequence.stream == 4711


@pytest.mark.parametrize("reply", ["", "_INBOX.abc.1", "$JS.ACK.S.c.1.2.3.4", "$JS.ACK._.H.S.c.1.2.3.4",
                                   "$JS.API.S.c.1.2.3.4.5"])
def test_a_message_that_is_not_a_jetstream_delivery_is_refused(reply: str) -> None:
    with pytest.raises(ValueError, match="not a JetStream delivery"):
        stream_seq(_delivery(reply))
