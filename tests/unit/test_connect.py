"""A service's first NATS connection gives up with the reason instead of hanging a start."""

from __future__ import annotations

import pytest
from claiim_runtime.streams import connect
from claiim_server.servers import free_port


async def test_first_connection_to_a_server_that_is_not_there_fails_with_the_address() -> None:
    port = free_port()
    with pytest.raises(ConnectionError, match=rf"cannot connect to NATS at 127\.0\.0\.1:{port} within 1 s: .*"):
        await connect(f"nats://user:secret@127.0.0.1:{port}", name="t", first_wait=1.0)


async def test_the_error_does_not_show_the_password() -> None:
    port = free_port()
    with pytest.raises(ConnectionError) as info:
        await connect(f"nats://user:hunter2@127.0.0.1:{port}", name="t", first_wait=0.5)
    assert "hunter2" not in str(info.value)
