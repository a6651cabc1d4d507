"""The admin client: apply bundles and read Chron, over the admin and Chron request subjects.

Settings come from arguments, else ``CLAIIM_URL`` and ``CLAIIM_ADMIN_TOKEN``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal, TypeVar

import msgspec
from claiim_core.names import Names
from claiim_core.schemas import (
    AgentCommand,
    AgentCommandReply,
    ApplyReply,
    ApplyRequest,
    ChronQuery,
    ChronRecord,
    ChronResult,
    PolicyVersionInfo,
    RegistryQuery,
    RegistryQueryReply,
)

from claiim._errors import AdminError, ProtocolError
from claiim._transport import NatsTransport, Transport, resolve_url

_encode = msgspec.json.Encoder().encode


T = TypeVar("T")


def _decode(data: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProtocolError(f"answer does not decode: {e}") from e


class AsyncAdmin:
    def __init__(self, url: str | None = None, admin_token: str | None = None, *,
                 timeout: float = 30.0, namespace: str | None = None,
                 transport: Transport | None = None) -> None:
        token = admin_token or os.environ.get("CLAIIM_ADMIN_TOKEN")
        if not token:
            raise AdminError("no admin token: pass admin_token or set CLAIIM_ADMIN_TOKEN")
        self._token = token
        self.url = resolve_url(url)
        self.names = Names(namespace or os.environ.get("CLAIIM_NAMESPACE") or "claiim")
        self.timeout = timeout
        self._transport = transport or NatsTransport(self.url, name="claiim-admin")

    async def apply(self, bundle: dict[str, Any], dry_run: bool = False) -> ApplyReply:
        """Apply a bundle; raises :class:`AdminError` with the server's reason when refused."""
        request = ApplyRequest(admin_token=self._token, bundle=bundle, dry_run=dry_run)
        data = await self._transport.request(self.names.admin_apply, _encode(request), self.timeout)
        reply = _decode(data, ApplyReply)
        if not reply.ok:
            raise AdminError(reply.error or "refused")
        return reply

    async def agent_command(self, op: Literal["suspend", "reactivate", "rotate-token", "revoke-token"],
                            agent_id: str, reason: str = "") -> AgentCommandReply:
        """Run one agent lifecycle command; rotate-token's reply carries the new token (shown once)."""
        cmd = AgentCommand(admin_token=self._token, op=op, agent_id=agent_id, reason=reason)
        data = await self._transport.request(self.names.admin_agent, _encode(cmd), self.timeout)
        reply = _decode(data, AgentCommandReply)
        if not reply.ok:
            raise AdminError(reply.error or "refused")
        return reply

    async def suspend(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        """The kill switch: every later check of the agent is denied, in every gate replica."""
        return await self.agent_command("suspend", agent_id, reason)

    async def reactivate(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return await self.agent_command("reactivate", agent_id, reason)

    async def rotate_token(self, agent_id: str) -> str:
        """Issue a new token; the old one is denied as rotated out from now on."""
        token = (await self.agent_command("rotate-token", agent_id)).token
        if token is None:
            raise ProtocolError("rotate-token answered without a token")
        return token

    async def revoke_token(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return await self.agent_command("revoke-token", agent_id, reason)

    async def explain(self, agent_id: str, action: str) -> RegistryQueryReply:
        """What the gate would decide now for ``agent_id`` and ``action``, with the path; not recorded."""
        return await self._registry(RegistryQuery(admin_token=self._token, op="explain", agent_id=agent_id,
                                                  action=action))

    async def policy_versions(self, org: str, name: str) -> list[PolicyVersionInfo]:
        reply = await self._registry(RegistryQuery(admin_token=self._token, op="policy-versions", org=org,
                                                   name=name))
        return reply.versions

    async def _registry(self, query: RegistryQuery) -> RegistryQueryReply:
        data = await self._transport.request(self.names.admin_query, _encode(query), self.timeout)
        reply = _decode(data, RegistryQueryReply)
        if not reply.ok:
            raise AdminError(reply.error or "refused")
        return reply

    async def chron_list(self, *, agent_id: str | None = None,
                         outcome: Literal["ALLOW", "DENY"] | None = None, since: str | None = None,
                         kind: Literal["decision", "control"] | None = None,
                         limit: int = 50) -> list[ChronRecord]:
        return await self._query(ChronQuery(admin_token=self._token, op="list", agent_id=agent_id,
                                            outcome=outcome, since=since, kind=kind, limit=limit))

    async def chron_show(self, chron_id: str) -> ChronRecord | None:
        records = await self._query(ChronQuery(admin_token=self._token, op="show",
                                               chron_id=chron_id))
        return records[0] if records else None

    async def _query(self, query: ChronQuery) -> list[ChronRecord]:
        data = await self._transport.request(self.names.chron_query, _encode(query), self.timeout)
        result = _decode(data, ChronResult)
        if result.error:
            raise AdminError(result.error)
        return result.records

    async def close(self) -> None:
        await self._transport.close()


class Admin:
    """Synchronous wrapper around :class:`AsyncAdmin` (one call at a time)."""

    def __init__(self, url: str | None = None, admin_token: str | None = None, *,
                 timeout: float = 30.0, namespace: str | None = None) -> None:
        self._admin = AsyncAdmin(url, admin_token, timeout=timeout, namespace=namespace)
        self._loop = asyncio.new_event_loop()

    def apply(self, bundle: dict[str, Any], dry_run: bool = False) -> ApplyReply:
        return self._loop.run_until_complete(self._admin.apply(bundle, dry_run))

    def suspend(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return self._loop.run_until_complete(self._admin.suspend(agent_id, reason))

    def reactivate(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return self._loop.run_until_complete(self._admin.reactivate(agent_id, reason))

    def rotate_token(self, agent_id: str) -> str:
        return self._loop.run_until_complete(self._admin.rotate_token(agent_id))

    def revoke_token(self, agent_id: str, reason: str = "") -> AgentCommandReply:
        return self._loop.run_until_complete(self._admin.revoke_token(agent_id, reason))

    def chron_list(self, **filters: Any) -> list[ChronRecord]:
        return self._loop.run_until_complete(self._admin.chron_list(**filters))

    def chron_show(self, chron_id: str) -> ChronRecord | None:
        return self._loop.run_until_complete(self._admin.chron_show(chron_id))

    def close(self) -> None:
        self._loop.run_until_complete(self._admin.close())
        self._loop.close()
