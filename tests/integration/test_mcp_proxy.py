"""`claiim mcp proxy` on the real stack: an MCP client session (the SDK's client) → the proxy → a real upstream MCP
server started by the test, over stdio and over streamable HTTP. The upstream counts the calls it serves, so a
denied call is proven never to have reached it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from claiim import AsyncGate, UnauthorizedError
from claiim.mcp.config import parse_config
from claiim.mcp.proxy import Agent, Agents, GatedProxy, upstream_clients
from claiim_runtime.settings import Settings
from claiim_server.servers import free_port
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import Stack, gate_via
from tests.integration.test_decision_path import wait_in_chron

pytestmark = pytest.mark.integration
UPSTREAM = str(Path(__file__).resolve().parents[2] / "examples" / "mcp_files_server.py")
BIN = Path(sys.executable).parent
FILES_BUNDLE = {
    "org": "demo",
    "skills": [{"name": "files", "version": 1, "actions": [
        "mcp:files:read_file", "mcp:files:delete_file", "mcp:files:resource:*", "mcp:files:prompt:*"]}],
    "policies": [{"name": "files", "version": 1, "skill": "files-v1",
                  "allow": ["mcp:files:read_file", "mcp:files:resource:memo", "mcp:files:resource:files",
                            "mcp:files:prompt:summarise"],
                  "deny": [{"action": "mcp:files:delete_file", "description": "files are deleted by people"}]}],
    "agents": [{"id": "files-bot", "anchor": "f.owner", "skills": ["files-v1"], "policy": "files-v1"}],
}


def counts(path: Path) -> dict[str, int]:
    return json.loads(path.read_text()) if path.exists() else {}


def text(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


def config_file(tmp_path: Path, server: dict[str, Any]) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"files": {**server, "claiim": {"target": "path"}}}}))
    return path


def proxy_env(settings: Settings, agent: str | None = None, token: str | None = None) -> dict[str, str]:
    env = {"CLAIIM_URL": settings.url, "CLAIIM_NAMESPACE": settings.namespace, "PATH": str(BIN)}
    if agent and token:
        env |= {"CLAIIM_AGENT_ID": agent, "CLAIIM_AGENT_TOKEN": token}
    return env


@pytest.fixture
async def files_bot(stack: Stack) -> str:
    """The files-bot agent's token, in the stack's demo org."""
    return str((await stack.admin.apply(FILES_BUNDLE)).tokens["files-bot"])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            httpx2.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}: {log.read_text()}")


def start(spawned: list[subprocess.Popen[bytes]], argv: list[str], port: int, log: Path,
          env: dict[str, str] | None = None) -> None:
    """Start ``argv`` (logging to ``log``) and wait until it listens on ``port``."""
    with log.open("wb") as out:
        spawned.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
    wait_listening(port, spawned[-1], log)


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, killed at its end."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_over_stdio_allowed_calls_pass_and_denied_ones_never_reach_the_upstream(
        stack: Stack, files_bot: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls.json"
    config = config_file(tmp_path, {"command": sys.executable, "args": [UPSTREAM, str(calls)]})
    proxy = StdioServerParameters(command=str(BIN / "claiim"), args=["mcp", "proxy", "--config", str(config)],
                                  env=proxy_env(stack.settings, "files-bot", files_bot))
    async with Client(proxy, cache=None) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert listed == {"files__read_file", "files__delete_file"}  # admin_reset is outside the skill

        read = await client.call_tool("files__read_file", {"path": "readme.md"})
        assert not read.is_error and text(read) == "# hello"
        deleted = await client.call_tool("files__delete_file", {"path": "readme.md"})
        assert deleted.is_error
        assert "claiim denied mcp:files:delete_file on readme.md: policy:files-v1 -- action explicitly denied" in text(
            deleted)
        assert "Rule: deny[0]: mcp:files:delete_file" in text(deleted) and "f.owner" in text(deleted)
        outside = await client.call_tool("files__admin_reset", {})
        assert outside.is_error and "action outside the agent's skills" in text(outside)

        memo = await client.read_resource("memo://today")
        assert [c.text for c in memo.contents if isinstance(c, types.TextResourceContents)] == ["stand-up at ten"]
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["files://{name}"]
        with pytest.raises(MCPError, match=r"claiim denied mcp:files:resource:secret on secret://plans: .* "
                                           r"The resource was not read\."):
            await client.read_resource("secret://plans")
        notes = await client.read_resource("files://notes.txt")  # made from the template: checked the same way
        assert [c.text for c in notes.contents if isinstance(c, types.TextResourceContents)] == ["remember the milk"]
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"files__summarise"}
        prompt = await client.get_prompt("files__summarise", {"path": "notes.txt"})
        assert "Summarise notes.txt" in json.dumps(prompt.model_dump(mode="json"))

        assert counts(calls) == {"read_file": 1, "memo": 1, "file": 1, "summarise": 1}, \
            "denied calls never reach the upstream"
        chron_id = text(deleted).split("Chron id: ", 1)[1].split(".", 1)[0]
        denied_row = await wait_in_chron(stack, chron_id)
        assert (denied_row["outcome"], denied_row["action"], denied_row["target"], denied_row["policy"],
                denied_row["skill"], denied_row["anchor"]) == (
            "DENY", "mcp:files:delete_file", "readme.md", "files-v1", "files-v1", "f.owner")
        allowed = await stack.admin.chron_list(agent_id="files-bot", outcome="ALLOW", action="mcp:files:read_file")
        assert [(r.target, r.policy, r.skill) for r in allowed] == [("readme.md", "files-v1", "files-v1")]

        await stack.admin.suspend("files-bot", reason="test")
        suspended = await client.call_tool("files__read_file", {"path": "notes.txt"})
        assert suspended.is_error and "suspended" in text(suspended)
        assert counts(calls)["read_file"] == 1


async def test_over_http_each_request_names_its_agent_and_a_wrong_token_is_refused(
        stack: Stack, files_bot: str, tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    calls, upstream_port, proxy_port = tmp_path / "calls.json", free_port(), free_port()
    upstream_log, proxy_log = tmp_path / "upstream.log", tmp_path / "proxy.log"
    start(spawned, [sys.executable, UPSTREAM, str(calls), "--http", str(upstream_port)], upstream_port,
          upstream_log)
    config = config_file(tmp_path, {"url": f"http://127.0.0.1:{upstream_port}/mcp"})
    start(spawned, [str(BIN / "claiim"), "mcp", "proxy", "--config", str(config), "--http", f"127.0.0.1:{proxy_port}"],
          proxy_port, proxy_log, proxy_env(stack.settings))
    url = f"http://127.0.0.1:{proxy_port}/mcp"

    async with httpx2.AsyncClient(timeout=30) as http:  # async: the stack's auth service runs on this loop
        refused = await http.post(url, json={}, headers={"Authorization": f"Bearer {files_bot}x",
                                                          "Claiim-Agent": "files-bot"})
        assert refused.status_code == 401 and "does not prove agent files-bot" in refused.json()["error"], refused.text
        assert (await http.post(url, json={})).status_code == 401
    assert files_bot not in proxy_log.read_text()

    headers = {"Authorization": f"Bearer {files_bot}", "Claiim-Agent": "files-bot"}
    async with httpx2.AsyncClient(headers=headers) as http, Client(
            streamable_http_client(url, http_client=http), cache=None) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == {"files__read_file", "files__delete_file"}
        read = await client.call_tool("files__read_file", {"path": "notes.txt"})
        assert not read.is_error and text(read) == "remember the milk"
        deleted = await client.call_tool("files__delete_file", {"path": "notes.txt"})
        assert deleted.is_error and "explicitly denied" in text(deleted)
    assert counts(calls) == {"read_file": 1}
    assert files_bot not in proxy_log.read_text()


@asynccontextmanager
async def in_process(stack: Stack, token: str, calls: Path, show_all: bool = False) -> AsyncIterator[Client]:
    """The proxy's handlers in this process, exactly as served, over a stdio upstream; a client connected to
    them in process (entered and left in the test's own task, as anyio's cancel scopes require)."""
    config = parse_config(json.dumps({"mcpServers": {"files": {"command": sys.executable,
                                                               "args": [UPSTREAM, str(calls)]}}}))
    agents = Agents(stack.settings.url, stack.settings.namespace, Agent("files-bot", token), timeout=1.0)
    try:
        async with upstream_clients(config) as upstreams, Client(
                GatedProxy(config, upstreams, agents, show_all).server(), cache=None) as client:
            yield client
    finally:
        await agents.close()


async def test_with_the_gate_down_a_call_is_a_tool_error_and_not_made(stack: Stack, files_bot: str,
                                                                       tmp_path: Path) -> None:
    calls = tmp_path / "calls.json"
    async with in_process(stack, files_bot, calls) as client:
        assert not (await client.call_tool("files__read_file", {"path": "readme.md"})).is_error
        for gate in stack.running.gates:
            await gate.stop()
        stack.running.gates.clear()
        result = await client.call_tool("files__read_file", {"path": "readme.md"})
    assert result.is_error and "claiim could not ask the gate" in text(result) and "was not called" in text(result)
    assert counts(calls) == {"read_file": 1}


async def test_show_all_lists_every_tool_and_calls_are_still_checked(stack: Stack, files_bot: str,
                                                                      tmp_path: Path) -> None:
    calls = tmp_path / "calls.json"
    async with in_process(stack, files_bot, calls, show_all=True) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"files__read_file", "files__delete_file", "files__admin_reset"}
        assert (await client.call_tool("files__admin_reset", {})).is_error
        unknown = await client.call_tool("nowhere__x", {})
        assert unknown.is_error and "no tool 'nowhere__x'" in text(unknown)
    assert counts(calls) == {}


async def test_the_gate_tells_an_agent_what_its_skills_cover_and_nothing_to_a_wrong_token(
        stack: Stack, files_bot: str) -> None:
    """`<ns>.gate.skills`: the agent's skill versions and patterns; a token of another agent is refused; a
    suspended agent covers nothing. Asked over another agent's connection where NATS would not admit the caller."""
    async with AsyncGate("files-bot", files_bot, stack.settings.url, namespace=stack.settings.namespace) as gate:
        skills = await gate.skills()
    assert (skills.status, skills.skills) == ("active", ["files-v1"])
    assert skills.covers("mcp:files:read_file") and not skills.covers("mcp:files:admin_reset")
    with pytest.raises(UnauthorizedError, match="token does not match agent files-bot"):
        await gate_via(stack, "files-bot", stack.tokens["deploy-bot"]).skills()
    await stack.admin.suspend("files-bot", reason="test")
    suspended = await gate_via(stack, "files-bot", files_bot).skills()
    assert (suspended.status, suspended.actions) == ("suspended", [])
