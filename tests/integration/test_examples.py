"""examples/guarded_tools.py on the real stack: each framework's guarded staging tool runs, its production tool is
denied before it runs, and both decisions are in Chron."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from claiim import ActionDenied, AsyncGate, Gate

from tests.conftest import Stack

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "guarded_tools.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guarded_tools", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_guarded_langchain_tool_runs_only_when_allowed(stack: Stack) -> None:
    """The synchronous Gate and LangChain run in a thread: the stack's services run on this test's loop."""
    pytest.importorskip("langchain_core")
    settings = stack.settings

    def use_the_tools() -> tuple[str, ActionDenied]:
        with Gate("deploy-bot", stack.tokens["deploy-bot"], settings.url, namespace=settings.namespace) as gate:
            staging, production = example().langchain_tools(gate)
            ran = staging.invoke({"service": "api-v2"})
            with pytest.raises(ActionDenied) as denied:
                production.invoke({"service": "api-v2"})
        return ran, denied.value

    ran, denied = await asyncio.to_thread(use_the_tools)
    assert ran == "api-v2 deployed to staging"
    assert denied.decision.reason == "policy:no-prod-v1 -- action explicitly denied"
    assert denied.decision.chron_id.startswith("chr_")


async def test_a_guarded_openai_agents_tool_returns_the_denial_to_the_model(stack: Stack) -> None:
    pytest.importorskip("agents")
    module = example()
    settings = stack.settings
    async with AsyncGate("deploy-bot", stack.tokens["deploy-bot"], settings.url,
                         namespace=settings.namespace) as gate:
        staging, production = module.openai_agents_tools(gate)
        assert await module.invoke_openai_tool(staging, {"service": "api-v2"}) == "api-v2 deployed to staging"
        said = await module.invoke_openai_tool(production, {"service": "api-v2"})
    assert "DENY deploy:production on api-v2: policy:no-prod-v1 -- action explicitly denied" in said
    for _ in range(100):  # the decisions reach Chron a moment after the replies
        records = await stack.admin.chron_list(agent_id="deploy-bot")
        if len(records) >= 2:
            break
        await asyncio.sleep(0.05)
    assert [r.action for r in records[:2]] == ["deploy:production", "deploy:staging"]
