"""The one seam between the SDK and the network: request bytes, get reply bytes.

:class:`NatsTransport` is the real one. Tests and tools can pass any object with the same
``request``/``close`` methods (for example a fake that answers from a function).
"""

from __future__ import annotations

import os
from typing import Protocol

import nats
from nats.aio.client import Client
from nats.errors import NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout

from claiim._errors import GateUnavailableError

DEFAULT_URL = "nats://127.0.0.1:4222"


def resolve_url(url: str | None) -> str:
    """The argument, else ``CLAIIM_URL``, else ``nats://127.0.0.1:4222``."""
    return url or os.environ.get("CLAIIM_URL") or DEFAULT_URL


class Transport(Protocol):
    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes: ...

    async def close(self) -> None: ...


class NatsTransport:
    """Request/reply over one lazily opened NATS connection.

    Replies arrive under ``inbox_prefix`` (default ``CLAIIM_INBOX_PREFIX``, else ``_INBOX``): with
    the NATS permissions of ``deploy/nats/nats-auth.conf`` each agent may only receive on its own
    prefix, ``_INBOX_<agent>``, so that no agent can read another's replies.
    """

    def __init__(self, url: str, name: str = "claiim-sdk", inbox_prefix: str | None = None,
                 client: Client | None = None) -> None:
        self.url = url
        self._name = name
        self._inbox = inbox_prefix or os.environ.get("CLAIIM_INBOX_PREFIX") or "_INBOX"
        self._nc: Client | None = client
        """``client``: an open connection to share (the admin UI's); it is used as it is."""

    async def _connection(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            try:
                self._nc = await nats.connect(
                    self.url, name=self._name, connect_timeout=2, max_reconnect_attempts=3,
                    reconnect_time_wait=0.5, allow_reconnect=True, inbox_prefix=self._inbox,
                )
            except (NoServersError, OSError, NatsTimeout) as e:
                raise GateUnavailableError(f"cannot connect to {self.url}: {e}") from e
        return self._nc

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        nc = await self._connection()
        try:
            msg = await nc.request(subject, payload, timeout=timeout)
        except NoRespondersError as e:
            raise GateUnavailableError(f"no service answers on {subject} at {self.url}") from e
        except NatsTimeout as e:
            raise GateUnavailableError(f"no answer on {subject} within {timeout}s") from e
        except Exception as e:
            raise GateUnavailableError(f"request on {subject} failed: {e!r}") from e
        return bytes(msg.data)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        self._nc = None
