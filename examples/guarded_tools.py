"""Guarded tools in two agent frameworks: a LangChain tool and an OpenAI Agents SDK function tool, each asking
claiim's gate before it runs (``gate.guard``). Neither framework is a dependency of claiim.

Run with ``claiim up`` running (it writes ``.claiim/env`` and the demo agents' tokens):

    pip install langchain-core openai-agents
    .venv/bin/python examples/guarded_tools.py

The demo's ``deploy-bot`` may deploy to staging and not to production: each framework's staging tool runs,
and its production tool is denied before it runs. No model is called; the tools are invoked as a framework
invokes them.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from claiim import ActionDenied, AsyncGate, Gate


def langchain_tools(gate: Gate) -> list[Any]:
    """Two LangChain tools; a denied call raises :class:`ActionDenied` out of ``invoke``."""
    from langchain_core.tools import tool

    @tool
    @gate.guard("deploy:staging", target=lambda service: service)
    def deploy_staging(service: str) -> str:
        """Deploy a service to staging."""
        return f"{service} deployed to staging"

    @tool
    @gate.guard("deploy:production", target=lambda service: service)
    def deploy_production(service: str) -> str:
        """Deploy a service to production."""
        return f"{service} deployed to production"

    return [deploy_staging, deploy_production]


def denial_for_the_model(_context: Any, error: Exception) -> str:
    """What the model reads when a tool fails: the denial itself (reason, rule, chron id), so that it can tell
    the person why; the Agents SDK's default hides every error's text."""
    if isinstance(error, ActionDenied):
        return str(error)
    return "An error occurred while running the tool."


def openai_agents_tools(gate: AsyncGate) -> list[Any]:
    """Two OpenAI Agents SDK function tools; a denied call comes back to the model as the tool's error text."""
    from agents import function_tool

    @function_tool(failure_error_function=denial_for_the_model)
    @gate.guard("deploy:staging", target=lambda service: service)
    async def deploy_staging(service: str) -> str:
        """Deploy a service to staging."""
        return f"{service} deployed to staging"

    @function_tool(failure_error_function=denial_for_the_model)
    @gate.guard("deploy:production", target=lambda service: service)
    async def deploy_production(service: str) -> str:
        """Deploy a service to production."""
        return f"{service} deployed to production"

    return [deploy_staging, deploy_production]


async def invoke_openai_tool(tool: Any, arguments: dict[str, str]) -> str:
    """Invoke a function tool as the Agents SDK's runner does with a model's tool call."""
    from agents.tool_context import ToolContext

    text = json.dumps(arguments)
    context = ToolContext(context=None, tool_name=tool.name, tool_call_id="example", tool_arguments=text)
    return str(await tool.on_invoke_tool(context, text))


def _token(agent: str) -> str:
    return str(json.loads(Path(".claiim/demo-tokens.json").read_text())[agent])


def main() -> None:
    for line in Path(".claiim/env").read_text().splitlines():
        key, _, value = line.partition("=")
        os.environ.setdefault(key, value)
    with Gate(agent_id="deploy-bot", token=_token("deploy-bot")) as gate:
        staging, production = langchain_tools(gate)
        print("LangChain:", staging.invoke({"service": "api-v2"}))
        try:
            production.invoke({"service": "api-v2"})
        except ActionDenied as e:
            print("LangChain:", e)

    async def agents_sdk() -> None:
        async with AsyncGate(agent_id="deploy-bot", token=_token("deploy-bot")) as gate:
            staging, production = openai_agents_tools(gate)
            print("Agents SDK:", await invoke_openai_tool(staging, {"service": "api-v2"}))
            print("Agents SDK:", await invoke_openai_tool(production, {"service": "api-v2"}))

    asyncio.run(agents_sdk())


if __name__ == "__main__":
    main()
