"""Running the proxy: over stdio (what desktop MCP clients start) or streamable HTTP, where each
request names its agent with a bearer token."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from mcp.server.stdio import stdio_server

from claiim.errors import GateUnavailableError, ProtocolError, UnauthorizedError
from claiim.mcp.config import ProxyConfig
from claiim.mcp.proxy import AGENT_HEADER, Agent, Agents, GatedProxy, upstream_clients

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def serve(config: ProxyConfig, agents: Agents, *, http: tuple[str, int] | None = None,
                show_all: bool = False, ready: Callable[[], None] | None = None) -> None:
    """Connect to every upstream, then serve until the client goes (stdio) or a signal (HTTP)."""
    try:
        async with upstream_clients(config) as upstreams:
            proxy = GatedProxy(config, upstreams, agents, show_all)
            server = proxy.server()
            if http is None:
                async with stdio_server() as (read, write):
                    if ready is not None:
                        ready()
                    await server.run(read, write, server.create_initialization_options())
                return
            host, port = http
            app = RequireAgent(server.streamable_http_app(host=host), agents)
            web = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
            if ready is not None:
                ready()
            await web.serve()
    finally:
        await agents.close()


class RequireAgent:
    """Admits an HTTP request only with ``Authorization: Bearer <agent token>`` that proves the agent
    its ``Claiim-Agent`` header names (the proxy's own agent id when absent); the agent rides on the
    request to the MCP handlers."""

    def __init__(self, app: ASGIApp, agents: Agents) -> None:
        self._app, self._agents = app, agents

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        default = self._agents.default
        agent_id = headers.get(AGENT_HEADER) or (default.agent_id if default else "")
        if scheme.lower() != "bearer" or not token.strip():
            await _refuse(send, 401, "send the agent's claiim token: Authorization: Bearer <token>")
            return
        if not agent_id:
            await _refuse(send, 401, "name the agent: Claiim-Agent: <agent id>")
            return
        agent = Agent(agent_id, token.strip())
        try:
            await self._agents.verify(agent)
        except UnauthorizedError as e:
            await _refuse(send, 401, f"the token does not prove agent {agent_id}: {e}")
            return
        except (GateUnavailableError, ProtocolError) as e:
            await _refuse(send, 503, f"claiim cannot check the agent's token now: {e}")
            return
        scope.setdefault("state", {})["claiim_agent"] = agent
        await self._app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="claiim"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
