"""A small MCP server (the tests, the latency bench and docs/mcp.md use it): a few file tools over an
in-memory store, a resource and a prompt, counting every call it serves in a file, so that a test can
prove a denied call never reached it.

Run: ``python examples/mcp_files_server.py COUNTS_FILE`` (stdio) or ``... COUNTS_FILE --http PORT`` (streamable HTTP
on 127.0.0.1:PORT/mcp).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

COUNTS = Path(sys.argv[1])
FILES = {"readme.md": "# hello", "notes.txt": "remember the milk"}
server = MCPServer("files")


def counted(name: str) -> None:
    counts = json.loads(COUNTS.read_text()) if COUNTS.exists() else {}
    counts[name] = counts.get(name, 0) + 1
    COUNTS.write_text(json.dumps(counts))


@server.tool()
def read_file(path: str) -> str:
    """The text of a file."""
    counted("read_file")
    return FILES.get(path, f"no file {path}")


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file."""
    counted("delete_file")
    FILES.pop(path, None)
    return f"deleted {path}"


@server.tool()
def admin_reset() -> str:
    """A tool outside every test agent's skills."""
    counted("admin_reset")
    return "reset"


@server.resource("memo://today")
def today() -> str:
    counted("memo")
    return "stand-up at ten"


@server.resource("files://{name}")
def file(name: str) -> str:
    counted("file")
    return FILES.get(name, f"no file {name}")


@server.prompt()
def summarise(path: str) -> str:
    counted("summarise")
    return f"Summarise {path} in one line."


if __name__ == "__main__":
    if "--http" in sys.argv:
        server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[sys.argv.index("--http") + 1]))
    else:
        server.run()
