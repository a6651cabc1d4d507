"""``claiim mcp proxy``: an MCP server in front of MCP servers, asking the gate before every call.

- **Tools.** Every upstream tool is listed as ``<server>__<tool>``, and only when the agent's skills
  cover its action (``mcp:<server>:<tool>`` unless configured; ``show_all`` lists every tool).
  A call is checked first: ALLOW sends it upstream and returns the upstream's result unchanged;
  DENY returns a tool error naming the reason, the rule and the chron id, and the upstream is never
  called; when the gate cannot be asked the call is not made either (a tool error says so).
- **Resources** are listed under their own URIs (filtered the same way) and a read is checked as
  ``mcp:<server>:resource:<uri-scheme>`` with the URI as target. **Prompts** are listed as
  ``<server>__<prompt>`` and getting one is checked as ``mcp:<server>:prompt:<name>``.
- **The agent** is the proxy's own (``CLAIIM_AGENT_ID`` and ``CLAIIM_AGENT_TOKEN``) over stdio; over
  streamable HTTP each request names its agent (``Authorization: Bearer <agent token>`` and
  ``Claiim-Agent: <agent id>``, which defaults to the proxy's own agent id), and a token that does
  not prove its agent is answered 401. Tokens are never logged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from claiim import AsyncGate, CheckResult
from claiim.errors import GateUnavailableError, ProtocolError, UnauthorizedError
from claiim.mcp.config import (
    Call,
    CallRefused,
    ProxyConfig,
    ServerConfig,
    prompt_action,
    resource_action,
    scheme_of,
    split_name,
    tool_call,
    tool_name,
)

log = logging.getLogger(__name__)
VERIFIED_S = 60.0
"""How long an HTTP request's agent token counts as proven after the gate accepted it (every call is
still checked by the gate, which refuses a revoked token at once)."""
AGENT_HEADER = "claiim-agent"


@dataclass(frozen=True, slots=True)
class Agent:
    agent_id: str
    token: str


class Agents:
    """One gate client per agent and token (a token is held in memory only, and keyed by its hash)."""

    def __init__(self, url: str | None, namespace: str, default: Agent | None, timeout: float = 5.0) -> None:
        self._url, self._namespace, self._timeout = url, namespace, timeout
        self.default = default
        self._gates: dict[tuple[str, str], AsyncGate] = {}
        self._verified: dict[tuple[str, str], float] = {}

    @staticmethod
    def _key(agent: Agent) -> tuple[str, str]:
        return agent.agent_id, hashlib.sha256(agent.token.encode()).hexdigest()

    def gate(self, agent: Agent) -> AsyncGate:
        key = self._key(agent)
        if key not in self._gates:
            self._gates[key] = AsyncGate(agent.agent_id, agent.token, self._url, timeout=self._timeout,
                                         namespace=self._namespace)
        return self._gates[key]

    async def verify(self, agent: Agent) -> None:
        """Raise :class:`UnauthorizedError` unless the gate accepts the agent's token (remembered for
        :data:`VERIFIED_S`), :class:`GateUnavailableError` when it cannot be asked."""
        key = self._key(agent)
        if time.monotonic() - self._verified.get(key, -VERIFIED_S) < VERIFIED_S:
            return
        try:
            await self.gate(agent).skills()
        except UnauthorizedError:
            await self._gates.pop(key).close()
            raise
        self._verified[key] = time.monotonic()

    async def close(self) -> None:
        for gate in self._gates.values():
            await gate.close()
        self._gates.clear()


@asynccontextmanager
async def upstream_clients(config: ProxyConfig) -> AsyncIterator[dict[str, Client]]:
    """A connected MCP client for each configured server, closed on exit."""
    async with AsyncExitStack() as stack:
        clients = {}
        for name, server in config.mcpServers.items():
            try:
                clients[name] = await stack.enter_async_context(_client(server, stack))
            except Exception as e:
                raise ConnectionError(f"MCP server {name!r} did not start or answer: {e!r}") from e
        yield clients


def _client(server: ServerConfig, stack: AsyncExitStack) -> Client:
    if server.command is not None:
        return Client(StdioServerParameters(command=server.command, args=server.args, env=server.env or None,
                                            cwd=server.cwd), cache=None)
    assert server.url is not None
    http = httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(30.0, read=300.0))
    stack.push_async_callback(http.aclose)
    return Client(streamable_http_client(server.url, http_client=http), cache=None)


class GatedProxy:
    """The MCP server's handlers: list what the agent may use, check every call with the gate."""

    def __init__(self, config: ProxyConfig, upstreams: dict[str, Client], agents: Agents,
                 show_all: bool = False) -> None:
        self._config, self._upstreams, self._agents, self._show_all = config, upstreams, agents, show_all
        self._resource_server: dict[str, str] = {}
        self._template_server: dict[str, str] = {}
        """By URI scheme, the server whose resource template has it: where a read of a URI it makes goes."""

    def server(self, name: str = "claiim-mcp-proxy") -> Server[Any]:
        return Server(name, instructions="Tools behind claiim: each call is checked and recorded before it runs.",
                      on_list_tools=self.list_tools, on_call_tool=self.call_tool,
                      on_list_resources=self.list_resources, on_read_resource=self.read_resource,
                      on_list_resource_templates=self.list_resource_templates,
                      on_list_prompts=self.list_prompts, on_get_prompt=self.get_prompt)

    # -- who asks --------------------------------------------------------------------------------

    def _agent(self, ctx: ServerRequestContext[Any]) -> Agent:
        request = ctx.request
        found = getattr(getattr(request, "state", None), "claiim_agent", None)
        if isinstance(found, Agent):
            return found
        if self._agents.default is None:
            raise MCPError(types.INVALID_REQUEST, "no agent: set CLAIIM_AGENT_ID and CLAIIM_AGENT_TOKEN")
        return self._agents.default

    async def _covers(self, ctx: ServerRequestContext[Any]) -> Callable[[str], bool]:
        """Whether the agent's skills cover an action (everything with ``show_all``)."""
        if self._show_all:
            return lambda _action: True
        try:
            skills = await self._agents.gate(self._agent(ctx)).skills()
        except (GateUnavailableError, ProtocolError) as e:
            raise MCPError(types.INTERNAL_ERROR, f"claiim cannot list what this agent may use: {e}") from e
        return skills.covers

    async def _listed(self, ctx: ServerRequestContext[Any], kind: str, action: Callable[[str, Any], Call],
                      capability: str = "") -> list[tuple[str, Any]]:
        """Every upstream's ``kind`` (``tools``, ``resources``, ``resource_templates``, ``prompts``), as
        (server, item), whose ``action`` the agent's skills cover, from the servers that declare the
        ``capability`` (default: ``kind``); an item whose action cannot be made is left out."""
        covers = await self._covers(ctx)
        listed = []
        for server, client in self._upstreams.items():
            if getattr(client.server_capabilities, capability or kind):
                for item in await _all_pages(getattr(client, f"list_{kind}"), kind):
                    try:
                        if covers(action(server, item).action):
                            listed.append((server, item))
                    except CallRefused:
                        continue
        return listed

    # -- tools -----------------------------------------------------------------------------------

    async def list_tools(self, ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        listed = await self._listed(ctx, "tools", lambda server, tool: tool_call(
            server, self._config.mcpServers[server], tool.name, None))
        return types.ListToolsResult(tools=[tool.model_copy(update={"name": tool_name(server, tool.name)})
                                            for server, tool in listed])

    async def call_tool(self, ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        found = split_name(params.name)
        if found is None or found[0] not in self._upstreams:
            return _tool_error(f"no tool {params.name!r} here (tools are named <server>__<tool>)")
        server, tool = found
        try:
            call = tool_call(server, self._config.mcpServers[server], tool, params.arguments)
        except CallRefused as e:
            return _tool_error(f"claiim did not check this call, so it was not made: {e}")
        refused = await self._check(ctx, call)
        if refused is not None:
            return refused
        return await self._upstreams[server].call_tool(tool, params.arguments)

    async def _check(self, ctx: ServerRequestContext[Any], call: Call,
                     undone: str = "The tool was not called.") -> types.CallToolResult | None:
        """None when the gate allows ``call``, else the tool error to return instead (ending in ``undone``)."""
        try:
            decision = await self._agents.gate(self._agent(ctx)).check(call.action, call.target, call.context)
        except (GateUnavailableError, ProtocolError) as e:
            log.warning("%s not checked: %s", call.action, e)
            return _tool_error(f"claiim could not ask the gate ({e}); {call.action} was not called. Try again later.")
        if decision.outcome == "ALLOW":
            return None
        log.info("DENY %s %s: %s (%s)", call.action, call.target, decision.reason, decision.chron_id)
        return _tool_error(denial(call, decision, undone))

    # -- resources -------------------------------------------------------------------------------

    async def list_resources(self, ctx: ServerRequestContext[Any],
                             params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        def action(server: str, resource: Any) -> Call:
            self._resource_server.setdefault(resource.uri, server)  # where a read of it goes
            return resource_action(server, resource.uri)

        return types.ListResourcesResult(resources=[r for _, r in await self._listed(ctx, "resources", action)])

    async def list_resource_templates(self, ctx: ServerRequestContext[Any],
                                      params: types.PaginatedRequestParams | None) -> types.ListResourceTemplatesResult:
        def action(server: str, template: Any) -> Call:
            call = resource_action(server, template.uri_template)
            self._template_server.setdefault(scheme_of(template.uri_template), server)
            return call

        listed = await self._listed(ctx, "resource_templates", action, capability="resources")
        return types.ListResourceTemplatesResult(resource_templates=[t for _, t in listed])

    async def read_resource(self, ctx: ServerRequestContext[Any],
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        server = self._resource_server.get(params.uri) or self._template_server.get(scheme_of(params.uri))
        if server is None and len(self._upstreams) == 1:
            server = next(iter(self._upstreams))
        if server is None:
            raise MCPError(types.INVALID_PARAMS, f"no listed resource or resource template for {params.uri!r} "
                                                 "(list them first)")
        try:
            call = resource_action(server, params.uri)
        except CallRefused as e:
            raise MCPError(types.INVALID_PARAMS, f"claiim did not check this read, so it was not made: {e}") from e
        refused = await self._check(ctx, call, "The resource was not read.")
        if refused is not None:
            raise MCPError(types.INVALID_REQUEST, _text(refused))
        return await self._upstreams[server].read_resource(params.uri)

    # -- prompts ---------------------------------------------------------------------------------

    async def list_prompts(self, ctx: ServerRequestContext[Any],
                           params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        listed = await self._listed(ctx, "prompts", lambda server, prompt: prompt_action(server, prompt.name))
        return types.ListPromptsResult(prompts=[prompt.model_copy(update={"name": tool_name(server, prompt.name)})
                                                for server, prompt in listed])

    async def get_prompt(self, ctx: ServerRequestContext[Any],
                         params: types.GetPromptRequestParams) -> types.GetPromptResult:
        found = split_name(params.name)
        if found is None or found[0] not in self._upstreams:
            raise MCPError(types.INVALID_PARAMS, f"no prompt {params.name!r} here (prompts are named <server>__<name>)")
        server, prompt = found
        refused = await self._check(ctx, prompt_action(server, prompt), "The prompt was not fetched.")
        if refused is not None:
            raise MCPError(types.INVALID_REQUEST, _text(refused))
        return await self._upstreams[server].get_prompt(prompt, params.arguments)


def denial(call: Call, decision: CheckResult, undone: str = "The tool was not called.") -> str:
    """What the model and the person reading the transcript see of a DENY."""
    on = f" on {call.target}" if call.target else ""
    return (f"claiim denied {call.action}{on}: {decision.reason}. Rule: {decision.rule}. Chron id: "
            f"{decision.chron_id or 'none (the decision could not be recorded)'}. Accountable human: "
            f"{decision.anchor or 'none'}. {undone}")


def _tool_error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def _text(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def _all_pages(fetch: Callable[..., Awaitable[Any]], field: str) -> list[Any]:
    """Every item of a paginated listing (``fetch(cursor=...)``)."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        page = await fetch(cursor=cursor)
        items += getattr(page, field)
        cursor = page.next_cursor
        if not cursor:
            return items
