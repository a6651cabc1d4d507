"""What ``claiim mcp proxy`` adds to a tool call: the same MCP client calls the same tool of the same upstream
server, directly and through the proxy, in alternating rounds of one run.

Run: ``.venv/bin/python bench/mcp_proxy.py [--calls 300] [--rounds 3]``

It starts its own nats-server and PostgreSQL, control, Chron, the OCSF feed and the auth service in one
``claiim serve`` process and the gate in another, applies a bundle for an agent whose policy allows
``mcp:files:read_file``, and starts ``examples/mcp_files_server.py`` over stdio. Each round makes ``--calls``
sequential ``read_file`` calls (one in flight, as a model makes them), first straight to the upstream, then
through ``claiim mcp proxy`` (stdio both ways; every proxied call is an ALLOW recorded in Chron). Prints p50 and
p99 per path over all rounds, what the proxy adds, and a denied call (``delete_file``) as the MCP client receives
it: the JSON-RPC result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from claiim import AsyncAdmin
from claiim_server.workers import serve_env
from decision_path import pct
from gate_profile import CLAIIM, backend_stack
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = str(ROOT / "examples" / "mcp_files_server.py")
BUNDLE = {"org": "demo",
          "skills": [{"name": "files", "version": 1, "actions": ["mcp:files:*"]}],
          "policies": [{"name": "files", "version": 1, "skill": "files-v1", "allow": ["mcp:files:read_file"],
                        "deny": ["mcp:files:delete_file"]}],
          "agents": [{"id": "files-bot", "anchor": "f.owner", "skills": ["files-v1"], "policy": "files-v1"}]}


async def timed_calls(server: StdioServerParameters, name: str, calls: int) -> list[float]:
    """Seconds per call of ``name``, after five unmeasured ones."""
    took = []
    async with Client(server, cache=None) as client:
        for i in range(calls + 5):
            started = time.perf_counter()
            result = await client.call_tool(name, {"path": "readme.md"})
            if i >= 5:
                took.append(time.perf_counter() - started)
            assert not result.is_error, result
    return took


def serve_gate(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([CLAIIM, "--env-file", os.devnull, "serve", "gate"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def main(args: argparse.Namespace) -> None:
    async with backend_stack("claiim-mcp-") as settings:
        with tempfile.TemporaryDirectory(prefix="claiim-mcp-bench-") as tmp:
            log = Path(tmp) / "gate.log"
            gate = serve_gate(serve_env(settings), log)
            try:
                while b"claiim serving" not in log.read_bytes():
                    assert gate.poll() is None, log.read_text()
                    await asyncio.sleep(0.1)
                admin = AsyncAdmin(settings.url, settings.require_admin_token(), org="demo",
                                   namespace=settings.namespace)
                try:
                    token = (await admin.apply(BUNDLE)).tokens["files-bot"]
                finally:
                    await admin.close()
                config = Path(tmp) / "mcp.json"
                config.write_text(json.dumps({"mcpServers": {"files": {
                    "command": sys.executable, "args": [UPSTREAM, str(Path(tmp) / "calls.json")],
                    "claiim": {"target": "path"}}}}))
                direct = StdioServerParameters(command=sys.executable, args=[UPSTREAM, str(Path(tmp) / "d.json")])
                proxied = StdioServerParameters(
                    command=CLAIIM, args=["mcp", "proxy", "--config", str(config)],
                    env={"CLAIIM_URL": settings.url, "CLAIIM_NAMESPACE": settings.namespace,
                         "CLAIIM_AGENT_ID": "files-bot", "CLAIIM_AGENT_TOKEN": token})
                results: dict[str, list[float]] = {"upstream alone": [], "through claiim": []}
                for _ in range(args.rounds):
                    results["upstream alone"] += await timed_calls(direct, "read_file", args.calls)
                    results["through claiim"] += await timed_calls(proxied, "files__read_file", args.calls)
                async with Client(proxied, cache=None) as client:
                    denied = await client.call_tool("files__delete_file", {"path": "readme.md"})
            finally:
                gate.terminate()
                gate.wait(10)
    p50 = {path: pct(took, 50) for path, took in results.items()}
    p99 = {path: pct(took, 99) for path, took in results.items()}
    for path in results:
        print(f"{path:<16} {len(results[path]):>5} calls  p50 {p50[path]:6.2f} ms  p99 {p99[path]:6.2f} ms")
    print(f"added by the proxy: p50 {p50['through claiim'] - p50['upstream alone']:.2f} ms, "
          f"p99 {p99['through claiim'] - p99['upstream alone']:.2f} ms")
    print("a denied call, as the client receives it:")
    print(json.dumps(denied.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
