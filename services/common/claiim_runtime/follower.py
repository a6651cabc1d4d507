"""The live registry: a projection of the control stream, built at start and followed after.

An ordered push consumer delivers every control event from sequence 1; :meth:`wait_caught_up`
returns once the projection has reached the stream's last sequence at the time of the call.

Every event is opened with the control keyring first (:func:`claiim_core.eventauth.open_control`):
one that is not signed by a trusted control key, is replayed on another subject or at another
place in the stream, or does not decode is never applied. It is logged at CRITICAL, counted in
:attr:`RegistryFollower.rejected` and, when ``keep_rejections`` is set (Chron, which parks it),
remembered with its reason. The stream position moves on past it either way, as it does past a
genuine event that cannot be applied (a bug, logged with its traceback).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
from claiim_core.eventauth import AuthError, ControlKeyring, open_control
from claiim_core.events import ControlEvent, decode_control
from claiim_core.names import Names
from claiim_core.registry import Registry
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)
Listener = Callable[[int, ControlEvent], None]
"""Called with each event's sequence after it is applied."""


class RegistryFollower:
    def __init__(self, js: JetStreamContext, names: Names, keyring: ControlKeyring, *,
                 keep_rejections: bool = False) -> None:
        self._js = js
        self._names = names
        self._keyring = keyring
        self.registry = Registry()
        self.rejected = 0
        """Control messages refused since start (forged, replayed or unreadable)."""
        self.rejections: dict[int, str] = {}
        """Stream sequence to the reason it was refused (only with ``keep_rejections``)."""
        self._keep = keep_rejections
        self._listeners: list[Listener] = []
        self._advanced = asyncio.Condition()
        self._sub: JetStreamContext.PushSubscription | None = None

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` for every event applied from now on."""
        self._listeners.append(listener)

    async def start(self) -> None:
        self._sub = await self._js.subscribe(
            self._names.control_wildcard, stream=self._names.control_stream,
            ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=self._on_event,
        )
        await self.wait_caught_up()

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    def verdict(self, seq: int) -> str | None:
        """Why the message at ``seq`` was refused, or None if it was applied (``keep_rejections`` only)."""
        return self.rejections.get(seq)

    async def _on_event(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        registry = self.registry
        try:
            event = decode_control(msg.data)
            open_control(event, msg.subject, seq, registry.subject_seq.get(msg.subject, 0), self._keyring,
                         self._names)
        except (AuthError, msgspec.DecodeError, msgspec.ValidationError) as e:
            log.critical("control message at seq %s on %s refused, not applied: %s: %s", seq, msg.subject,
                         "unauthenticated" if isinstance(e, AuthError) else "undecodable", e)
            self._refuse(seq, msg.subject, str(e))
        else:
            try:
                registry.apply(seq, msg.subject, event)
            except Exception:  # a genuine event that does not apply (a bug) must not stop the ones after it
                log.exception("control event at seq %s cannot be applied; skipped", seq)
                registry.skip(seq, msg.subject)
            else:
                for listener in self._listeners:
                    try:
                        listener(seq, event)
                    except Exception:
                        log.exception("a listener of control event %s failed", seq)
        async with self._advanced:
            self._advanced.notify_all()

    def _refuse(self, seq: int, subject: str, why: str) -> None:
        self.registry.skip(seq, subject)
        self.rejected += 1
        if self._keep:
            self.rejections[seq] = why

    async def wait_for(self, seq: int, timeout: float = 10.0) -> None:
        """Wait until the projection includes control-stream sequence ``seq``."""
        async with asyncio.timeout(timeout), self._advanced:
            await self._advanced.wait_for(lambda: self.registry.last_seq >= seq)

    async def wait_caught_up(self, timeout: float = 30.0) -> None:
        try:
            info = await self._js.stream_info(self._names.control_stream)
        except NotFoundError:
            return
        await self.wait_for(info.state.last_seq, timeout)
