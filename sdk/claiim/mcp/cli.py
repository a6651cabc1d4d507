"""``claiim mcp proxy`` (also ``claiim-mcp proxy``, with the client alone: ``pip install 'claiim[mcp]'``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from claiim.mcp.config import ConfigError, load_config

if TYPE_CHECKING:
    from claiim.mcp.proxy import Agent


def add_proxy_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--config", type=Path, required=True,
                     help="a JSON file with mcpServers (as MCP clients write it) and claiim sections")
    cmd.add_argument("--agent", default=None, help="the agent the proxy acts for (default: CLAIIM_AGENT_ID)")
    cmd.add_argument("--token-file", type=Path, default=None,
                     help="a file holding the agent's token (default: CLAIIM_AGENT_TOKEN); never on the command line")
    cmd.add_argument("--http", metavar="HOST:PORT", default=None,
                     help="serve streamable HTTP at http://HOST:PORT/mcp, each request naming its agent with "
                          "Authorization: Bearer <token> and Claiim-Agent (default: stdio)")
    cmd.add_argument("--show-all-tools", action="store_true",
                     help="list every upstream tool, not only those the agent's skills cover (calls are checked "
                          "either way)")
    cmd.add_argument("--url", default=None, help="the NATS URL of claiim (default: CLAIIM_URL)")
    cmd.add_argument("--namespace", default=None, help="claiim's namespace (default: CLAIIM_NAMESPACE, else claiim)")


def build_parser(prog: str = "claiim-mcp") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="claiim in front of MCP servers")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    add_proxy_arguments(sub.add_parser("proxy", help="an MCP server that asks the gate before every call",
                                       description="an MCP server that asks the gate before every call"))
    return parser


class UsageError(Exception):
    """The proxy cannot start as given: one line that names the fix (exit 2)."""


def run(args: argparse.Namespace) -> int:
    """Start the proxy with parsed arguments; the exit code (errors are one line on stderr). The MCP SDK
    is imported here, not with this module, so that ``claiim --help`` does not pay for it."""
    from claiim.mcp.proxy import Agents
    from claiim.mcp.serve import serve

    logging.basicConfig(level=os.environ.get("CLAIIM_LOG_LEVEL", "WARNING").upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(args.config)
        agent = _agent(args)
        http = _http(args.http)
        if http is None and agent is None:
            raise UsageError("no agent: set CLAIIM_AGENT_ID and CLAIIM_AGENT_TOKEN (or --agent and --token-file)")
        agents = Agents(args.url, args.namespace or os.environ.get("CLAIIM_NAMESPACE") or "claiim", agent)
        asyncio.run(serve(config, agents, http=http, show_all=args.show_all_tools,
                          ready=lambda: _say_ready(http, len(config.mcpServers))))
    except (ConfigError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ConnectionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _agent(args: argparse.Namespace) -> Agent | None:
    from claiim.mcp.proxy import Agent

    agent_id = args.agent or os.environ.get("CLAIIM_AGENT_ID")
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as e:
            raise UsageError(f"cannot read the token file {args.token_file}: {e.strerror or e}") from None
    else:
        token = os.environ.get("CLAIIM_AGENT_TOKEN", "")
    if bool(agent_id) != bool(token):
        raise UsageError("an agent needs both its id and its token (CLAIIM_AGENT_ID and CLAIIM_AGENT_TOKEN, or "
                         "--agent and --token-file)")
    if token.startswith("cla_"):
        raise UsageError("that is an admin token (cla_...); the proxy acts for an agent and needs its token (clm_...)")
    return Agent(agent_id, token) if agent_id else None


def _http(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise UsageError(f"--http {value!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    return host.strip("[]"), int(port)


def _say_ready(http: tuple[str, int] | None, servers: int) -> None:
    where = "stdio" if http is None else f"http://{http[0]}:{http[1]}/mcp"
    print(f"claiim mcp proxy serving {servers} MCP server(s) on {where}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(build_parser().parse_args(argv)))
