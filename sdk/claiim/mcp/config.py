"""The MCP proxy's configuration: the ``mcpServers`` file MCP clients already use, plus a ``claiim``
section per server that says how its calls become decisions.

::

    {"mcpServers": {
        "github": {"command": "github-mcp", "args": ["stdio"], "env": {"GITHUB_TOKEN": "..."},
                   "claiim": {"target": "repo", "context": ["branch"],
                              "tools": {"create_issue": {"context": ["title"]}}}},
        "docs":   {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer ..."}}}}

Pure: parsing and the mapping of a call to (action, target, context); nothing here talks to a server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}\Z")
"""A server's name: it starts the names of its tools (``github__create_issue``) and is part of
their actions, so it has no ``_`` (the separator) nor ``:``."""
SEPARATOR = "__"
DEFAULT_ACTION = "mcp:{server}:{tool}"
_NOT_IN_ACTION = re.compile(r"[^A-Za-z0-9_.\-]")
_ACTION = re.compile(r"[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*\Z")
MAX_CONTEXT_KEY, MAX_VALUE, MAX_CONTEXT = 64, 256, 32
"""The decision's limits (:class:`claiim_core.schemas.CheckRequest`): a context key's length, a
context value's or the target's length, and how many context entries there may be."""


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the server and the field."""


class ToolRule(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How calls of a tool become decisions; unset fields come from the server's section."""

    target: str | None = None
    """The argument whose value is the decision's target."""
    context: list[str] | None = None
    """The arguments copied into the decision's context."""
    action: str | None = None
    """The action, instead of ``mcp:<server>:<tool>`` (``{server}`` and ``{tool}`` are replaced)."""


class ClaiimSection(ToolRule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    tools: dict[str, ToolRule] = {}


class ServerConfig(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    command: str | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    claiim: ClaiimSection = ClaiimSection()


class ProxyConfig(Struct, forbid_unknown_fields=False, frozen=True):
    """Other top-level keys (an MCP client's own settings) are ignored."""

    mcpServers: dict[str, ServerConfig]


@dataclass(frozen=True, slots=True)
class Call:
    """What the gate is asked for one call."""

    action: str
    target: str
    context: dict[str, str]


class CallRefused(ValueError):
    """The call's arguments cannot be put into a decision (too long, not a scalar): it is not checked,
    so it is not made."""


def load_config(path: Path) -> ProxyConfig:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read the MCP configuration {path}: {e.strerror or e}") from None
    return parse_config(text, str(path))


def parse_config(text: str, where: str = "the configuration") -> ProxyConfig:
    try:
        config = msgspec.json.decode(text, type=ProxyConfig)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{where}: {e}") from None
    except msgspec.DecodeError as e:
        raise ConfigError(f"{where} is not JSON: {e}") from None
    if not config.mcpServers:
        raise ConfigError(f"{where}: mcpServers names no server")
    for name, server in config.mcpServers.items():
        if not SERVER_NAME.match(name):
            raise ConfigError(f"{where}: server name {name!r}: letters, digits and '-', at most 32 characters "
                              "(it starts its tools' names, <server>__<tool>)")
        if (server.command is None) == (server.url is None):
            raise ConfigError(f"{where}: server {name!r} needs either a command (stdio) or a url (streamable HTTP)")
        if server.url is not None and not re.match(r"https?://", server.url):
            raise ConfigError(f"{where}: server {name!r}: url must be http:// or https://")
        rules = [("claiim.action", server.claiim.action)] + [
            (f"claiim.tools.{tool}.action", rule.action) for tool, rule in server.claiim.tools.items()]
        for field, template in rules:
            if template is not None and not _valid_template(template):
                raise ConfigError(f"{where}: server {name!r}: {field} {template!r} is not an action (segments of "
                                  "[A-Za-z0-9_.-] joined by ':'; {server} and {tool} are replaced)")
    return config


def _valid_template(template: str) -> bool:
    try:
        return bool(_ACTION.match(template.format(server="s", tool="t")))
    except (KeyError, IndexError, ValueError):
        return False


def tool_name(server: str, tool: str) -> str:
    """The name the proxy lists a server's tool (or prompt) under."""
    return f"{server}{SEPARATOR}{tool}"


def split_name(name: str) -> tuple[str, str] | None:
    server, sep, tool = name.partition(SEPARATOR)
    return (server, tool) if sep and server and tool else None


def action_segment(text: str) -> str:
    """``text`` as one segment of an action: characters outside ``[A-Za-z0-9_.-]`` become ``_``."""
    return _NOT_IN_ACTION.sub("_", text) or "_"


def tool_call(server: str, config: ServerConfig, tool: str, arguments: Mapping[str, Any] | None) -> Call:
    """The action, target and context of a call of ``tool`` on ``server`` with ``arguments``."""
    section = config.claiim
    rule = section.tools.get(tool, ToolRule())
    template = rule.action or section.action or DEFAULT_ACTION
    action = template.format(server=action_segment(server), tool=action_segment(tool))
    args = arguments or {}
    target_arg = rule.target if rule.target is not None else section.target
    target = _value(target_arg, args.get(target_arg), "target") if target_arg and target_arg in args else ""
    context: dict[str, str] = {}
    for key in rule.context if rule.context is not None else (section.context or []):
        if key in args:
            if len(key) > MAX_CONTEXT_KEY:
                raise CallRefused(f"argument name {key[:20]!r}… is longer than {MAX_CONTEXT_KEY} characters, "
                                  "the limit of a context key")
            context[key] = _value(key, args[key], "context")
    if len(context) > MAX_CONTEXT:
        raise CallRefused(f"{len(context)} context arguments; a decision takes at most {MAX_CONTEXT}")
    return Call(action, target, context)


def scheme_of(uri: str) -> str:
    """A URI's (or URI template's) scheme; ``none`` without one."""
    return uri.split(":", 1)[0] if ":" in uri else "none"


def resource_action(server: str, uri: str) -> Call:
    """A resource read: ``mcp:<server>:resource:<uri-scheme>``, the URI its target (a template's action
    is that of the URIs it makes)."""
    scheme = scheme_of(uri)
    if len(uri) > MAX_VALUE:
        raise CallRefused(f"the resource URI is longer than {MAX_VALUE} characters, the limit of a target")
    return Call(f"mcp:{action_segment(server)}:resource:{action_segment(scheme)}", uri, {})


def prompt_action(server: str, prompt: str) -> Call:
    """A prompt: ``mcp:<server>:prompt:<name>``."""
    return Call(f"mcp:{action_segment(server)}:prompt:{action_segment(prompt)}", "", {})


def _value(name: str, value: Any, where: str) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float) or value is None:
        text = json.dumps(value)
    else:
        raise CallRefused(f"argument {name!r} is not a string or a number, so it cannot be the decision's {where}")
    if len(text) > MAX_VALUE:
        raise CallRefused(f"argument {name!r} is longer than {MAX_VALUE} characters, the limit of the "
                          f"decision's {where}")
    return text

