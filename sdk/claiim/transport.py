"""The one seam between the SDK and the network: request bytes, get reply bytes.

:class:`NatsTransport` is the real one. Tests and tools can pass any object with the same
``request``/``close`` methods (for example a fake that answers from a function).
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

import nats
from claiim_core.tokens import inbox_prefix
from claiim_core.urls import nats_servers
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout

from claiim.errors import ServiceUnavailableError, UnauthorizedError

DEFAULT_URL = "nats://127.0.0.1:4222"


def resolve_url(url: str | None) -> str:
    """The argument, else ``CLAIIM_URL``, else ``nats://127.0.0.1:4222``."""
    return url or os.environ.get("CLAIIM_URL") or DEFAULT_URL


async def connect_with_token(url: str, token: str, *, user: str = "admin", name: str = "claiim-sdk",
                             reconnects: int = 3) -> Client:
    """A NATS connection logged in with a claiim token (the auth service admits it with that token's
    permissions; ``user``: the agent id for an agent token). Raises :class:`UnauthorizedError` when
    the token is refused, :class:`ServiceUnavailableError` when NATS cannot be reached: what went
    wrong, never a traceback's worth of retries."""
    errors: list[Exception] = []

    async def remember(e: Exception) -> None:  # reported by the call that meets it, not printed
        errors.append(e)

    try:
        return await nats.connect(
            # nats-py reads max_reconnect_attempts=0 as "for ever": one try more is the least it can be told
            nats_servers(url), name=name, connect_timeout=2, max_reconnect_attempts=max(1, reconnects),
            reconnect_time_wait=0.5,
            allow_reconnect=True, error_cb=remember, user=(user or None) if token else None, password=token or None,
            inbox_prefix=inbox_prefix(token) if token else "_INBOX",
        )
    except (NoServersError, OSError, NatsTimeout, NatsError) as e:
        if any("authorization violation" in str(x).lower() for x in [*errors, e]):
            raise UnauthorizedError(f"unauthorized: NATS at {url} refused this token (unknown, rotated or revoked, "
                                    "or its agent suspended; or no claiim auth service answers NATS)") from None
        last = errors[-1] if errors else e
        raise ServiceUnavailableError(f"cannot connect to {url}: {str(last) or type(last).__name__}") from e


class Transport(Protocol):
    async def request(self, subject: str, payload: bytes, timeout: float,
                      headers: dict[str, str] | None = None) -> bytes: ...

    async def close(self) -> None: ...


class NatsTransport:
    """Request/reply over one lazily opened NATS connection, logged in with a claiim token.

    The token is the NATS password (``user``: the agent id, or ``admin``); the server asks claiim's
    auth service, which admits the client with only its own permissions. Replies arrive under the
    token's own inbox prefix (:func:`claiim_core.tokens.inbox_prefix`), the only one the client may
    subscribe to, so that no agent can read another's replies.
    """

    def __init__(self, url: str, name: str = "claiim-sdk", *, user: str = "", token: str = "",
                 client: Client | None = None) -> None:
        self.url = url
        self._name = name
        self._user = user
        self._token = token
        self._nc: Client | None = client
        """``client``: an open connection to share (the admin UI's); it is used as it is, and its owner
        closes it."""
        self._owned = client is None

    async def _connection(self) -> Client:
        if self._nc is None or self._nc.is_closed:
            self._nc = await connect_with_token(self.url, self._token, user=self._user, name=self._name)
            self._owned = True
        return self._nc

    async def request(self, subject: str, payload: bytes, timeout: float,
                      headers: dict[str, str] | None = None) -> bytes:
        """The reply within ``timeout`` (connecting included); raises :class:`ServiceUnavailableError`."""
        try:
            nc = await asyncio.wait_for(self._connection(), timeout)
        except TimeoutError:
            raise ServiceUnavailableError(f"cannot connect to {self.url} within {timeout:g}s") from None
        try:
            msg = await nc.request(subject, payload, timeout=timeout, headers=headers)
        except NoRespondersError as e:
            raise ServiceUnavailableError(f"no service answers on {subject} at {self.url}") from e
        except NatsTimeout as e:
            raise ServiceUnavailableError(f"no answer on {subject} within {timeout}s") from e
        except Exception as e:
            raise ServiceUnavailableError(f"request on {subject} failed: {e!r}") from e
        return bytes(msg.data)

    async def close(self) -> None:
        """Drain the connection this transport opened; a shared one is left to its owner."""
        if self._owned and self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
        self._nc = None
