"""The live registry: a projection of the control stream, built at start and followed after.

An ordered push consumer delivers every control event from sequence 1; :meth:`wait_caught_up`
returns once the projection has reached the stream's last sequence at the time of the call.
"""

from __future__ import annotations

import asyncio
import logging

from claiim_core.events import decode_control
from claiim_core.names import Names
from claiim_core.registry import Registry
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)


class RegistryFollower:
    def __init__(self, js: JetStreamContext, names: Names) -> None:
        self._js = js
        self._names = names
        self.registry = Registry()
        self._advanced = asyncio.Condition()
        self._sub: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        self._sub = await self._js.subscribe(
            self._names.control_wildcard, stream=self._names.control_stream,
            ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, cb=self._on_event,
        )
        await self.wait_caught_up()

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_event(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        try:
            self.registry.apply(seq, msg.subject, decode_control(msg.data))
        except Exception:  # an event that does not decode or apply must not stop the ones after it
            log.exception("control event at seq %s cannot be decoded or applied; skipped", seq)
            self.registry.last_seq = seq
        async with self._advanced:
            self._advanced.notify_all()

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
