"""The MCP proxy's configuration and how a call becomes a decision's action, target and context."""

from __future__ import annotations

import json

import pytest
from claiim.mcp.config import (
    CallRefused,
    ConfigError,
    parse_config,
    prompt_action,
    resource_action,
    split_name,
    tool_call,
    tool_name,
)

CONFIG = {"mcpServers": {
    "github": {"command": "github-mcp", "args": ["stdio"], "env": {"GITHUB_TOKEN": "x"},
               "claiim": {"target": "repo", "context": ["branch", "draft"],
                          "tools": {"search": {"target": "query", "context": []},
                                    "delete_repo": {"action": "github:destroy"}}}},
    "docs": {"url": "https://docs.example/mcp", "headers": {"Authorization": "Bearer t"}}},
    "globalShortcut": "Ctrl+Space"}


def test_a_call_maps_to_the_default_action_its_target_and_context() -> None:
    github = parse_config(json.dumps(CONFIG)).mcpServers["github"]
    call = tool_call("github", github, "create_pr", {"repo": "acme/api", "branch": "fix", "draft": True,
                                                      "body": "long text not in the context"})
    assert (call.action, call.target, call.context) == ("mcp:github:create_pr", "acme/api",
                                                        {"branch": "fix", "draft": "true"})


def test_a_tools_own_rule_overrides_the_servers() -> None:
    github = parse_config(json.dumps(CONFIG)).mcpServers["github"]
    search = tool_call("github", github, "search", {"query": "bug", "branch": "main", "repo": "acme/api"})
    assert (search.action, search.target, search.context) == ("mcp:github:search", "bug", {})
    assert tool_call("github", github, "delete_repo", {"repo": "acme/api"}).action == "github:destroy"


def test_a_server_without_a_claiim_section_has_no_target_nor_context() -> None:
    docs = parse_config(json.dumps(CONFIG)).mcpServers["docs"]
    call = tool_call("docs", docs, "fetch page", {"url": "x"})
    assert (call.action, call.target, call.context) == ("mcp:docs:fetch_page", "", {})


@pytest.mark.parametrize(("arguments", "why"), [
    ({"repo": "r" * 257}, "longer than 256"), ({"repo": {"owner": "acme"}}, "not a string or a number"),
    ({"repo": "a", "branch": ["x"]}, "not a string or a number")])
def test_arguments_a_decision_cannot_hold_refuse_the_call(arguments: dict[str, object], why: str) -> None:
    github = parse_config(json.dumps(CONFIG)).mcpServers["github"]
    with pytest.raises(CallRefused, match=why):
        tool_call("github", github, "create_pr", arguments)


def test_resources_and_prompts_have_actions_of_their_own() -> None:
    read = resource_action("files", "memo://today")
    assert (read.action, read.target) == ("mcp:files:resource:memo", "memo://today")
    assert resource_action("files", "no scheme").action == "mcp:files:resource:none"
    assert prompt_action("files", "summarise").action == "mcp:files:prompt:summarise"


def test_names_carry_their_server() -> None:
    assert tool_name("github", "create_pr") == "github__create_pr"
    assert split_name("github__create_pr") == ("github", "create_pr")
    assert split_name("github__a__b") == ("github", "a__b")
    assert split_name("create_pr") is None and split_name("__x") is None


@pytest.mark.parametrize(("servers", "why"), [
    ({}, "names no server"),
    ({"git_hub": {"command": "x"}}, "server name 'git_hub'"),
    ({"a": {}}, "either a command"),
    ({"a": {"command": "x", "url": "http://y"}}, "either a command"),
    ({"a": {"url": "ftp://y"}}, "http:// or https://"),
    ({"a": {"command": "x", "claiim": {"action": "bad action!"}}}, "claiim.action 'bad action!' is not an action"),
    ({"a": {"command": "x", "claiim": {"tools": {"t": {"action": "x:{nope}"}}}}}, r"claiim.tools.t.action"),
    ({"a": {"command": "x", "claiim": {"targt": "repo"}}}, "unknown field"),
])
def test_a_configuration_that_cannot_work_is_refused_naming_the_server_and_field(servers: object, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_config(json.dumps({"mcpServers": servers}), "mcp.json")


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mcp\.json is not JSON"):
        parse_config("{", "mcp.json")
