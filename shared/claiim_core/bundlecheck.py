"""A bundle's problems in words, every one at once.

msgspec stops at a bundle's first problem and names it in schema terms (``Expected `str` matching
regex ...``). :func:`bundle_problems` walks the plain data itself and says each problem the way a
person fixes it, each starting with its path (``agents[0] (deploy bot).id: ...``), so that the CLI
can point at ``FILE:LINE``. It checks the shape, the keys and what each value may hold (ids, names,
action patterns, rules, the syntax of references). :func:`claiim_core.bundle.parse_bundle` reports
these when a bundle does not decode; one that decodes goes on to
:func:`claiim_core.bundle.plan_bundle`, which reports malformed patterns and references together
with references that do not resolve, versions and rules' conditions (CEL).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from claiim_core.document import Rule
from claiim_core.names import TOKEN_RE
from claiim_core.policy import check_pattern, check_rule
from claiim_core.refs import NAME_PATTERN, parse_ref

MAX_NAME = 63
"""The longest skill or policy name."""
MAX_ANCHOR = 128
"""The longest anchor (the accountable human's name)."""

Check = Callable[[Any, str, list[str]], None]
"""Checks one value; appends each problem, prefixed with the value's path, to the list."""


def _kind(value: Any) -> str:
    """What a value is, in words: for ``must be a list, not text``."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    return {str: "text", int: "a number", float: "a number", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__)


def _textual(what: str, fault: Callable[[str], str | None]) -> Check:
    """A check that the value is text and that ``fault`` finds nothing wrong with it (else what is)."""
    def check(value: Any, where: str, problems: list[str]) -> None:
        why = fault(value) if isinstance(value, str) else f"{what} must be text, not {_kind(value)}"
        if why:
            problems.append(f"{where}: {why}")
    return check


def _text(what: str, *, least: int = 0, most: int | None = None) -> Check:
    def fault(value: str) -> str | None:
        if len(value) >= least and (most is None or len(value) <= most):
            return None
        span = f"{least} to {most} characters" if most is not None else f"at least {least} character(s)"
        return f"{what} must be {span} long (it has {len(value)})"
    return _textual(what, fault)


def _id(what: str) -> Check:
    return _textual(what, lambda value: None if TOKEN_RE.match(value) else
                    f"{what} {value!r} may hold only letters, digits, '_' and '-' (1 to 64)")


def _name(what: str) -> Check:
    return _textual(what, lambda value: None if re.fullmatch(NAME_PATTERN, value) and len(value) <= MAX_NAME else
                    f"{what} {value!r} may hold only a-z, 0-9, '_' and '-' (at most {MAX_NAME}, starting with a "
                    "letter or digit, not ending in -vN, which reads as a version)")


def _version(value: Any, where: str, problems: list[str]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"{where}: version must be a whole number from 1, not {value!r}")


def _ref(what: str) -> Check:
    def check(value: Any, where: str, problems: list[str]) -> None:
        if not isinstance(value, str):
            problems.append(f"{where}: {what} must be text (NAME or NAME-vN), not {_kind(value)}")
            return
        try:
            parse_ref(value)
        except ValueError as e:
            problems.append(f"{where}: {e}")
    return check


def _list_of(what: str, item: Check) -> Check:
    def check(value: Any, where: str, problems: list[str]) -> None:
        if not isinstance(value, list):
            problems.append(f"{where}: must be a list of {what}, not {_kind(value)}")
            return
        for j, entry in enumerate(value):
            item(entry, f"{where}[{j}]", problems)
    return check


def _pattern(value: Any, where: str, problems: list[str]) -> None:
    if not isinstance(value, str):
        problems.append(f"{where}: an action pattern is text such as deploy:staging, not {_kind(value)}")
        return
    try:
        check_pattern(value)
    except ValueError as e:
        problems.append(f"{where}: {e}")


RULE_KEYS = {"action": "the action pattern", "target": "a target pattern", "description": "what the rule is for",
             "when": "a condition (CEL)", "ttl": "seconds an approval waits", "approver": "anchor or admins"}
_TEXT_KEYS = ("action", "target", "description", "when")


def _rule(approve: bool) -> Check:
    def check(value: Any, where: str, problems: list[str]) -> None:
        if isinstance(value, str):
            _pattern(value, where, problems)
            return
        if not isinstance(value, dict):
            problems.append(f"{where}: a rule is an action pattern or a mapping with action and optional "
                            f"target, description and when; not {_kind(value)}")
            return
        before = len(problems)
        _keys(value, where, RULE_KEYS, {"action": RULE_KEYS["action"]}, "a rule", problems)
        for key, text in value.items():
            if key == "ttl" and (isinstance(text, bool) or not isinstance(text, int)):
                problems.append(f"{where}.ttl: ttl is a whole number of seconds, not {_kind(text)}")
            elif key == "approver" and text not in ("", "anchor", "admins"):
                problems.append(f"{where}.approver: approver is anchor or admins, not {text!r}")
            elif key in _TEXT_KEYS and not (isinstance(text, str) or (text is None and key in ("target", "when"))):
                problems.append(f"{where}.{key}: {key} must be text, not {_kind(text)}")
        if len(problems) > before:
            return
        try:
            check_rule(msgspec.convert(value, Rule), approve=approve)
        except (msgspec.ValidationError, ValueError) as e:
            problems.append(f"{where}: {e}")
    return check


SKILL: Mapping[str, tuple[str, Check]] = {
    "name": ("the skill's name", _name("skill name")),
    "actions": ("its action patterns", _list_of("action patterns", _pattern)),
    "description": ("", _text("description")),
    "version": ("", _version),
}
POLICY: Mapping[str, tuple[str, Check]] = {
    "name": ("the policy's name", _name("policy name")),
    "skill": ("the skill it governs, NAME or NAME-vN", _ref("skill")),
    "allow": ("", _list_of("rules", _rule(approve=False))),
    "deny": ("", _list_of("rules", _rule(approve=False))),
    "approve": ("", _list_of("rules", _rule(approve=True))),
    "description": ("", _text("description")),
    "version": ("", _version),
}
AGENT: Mapping[str, tuple[str, Check]] = {
    "id": ("the agent's id", _id("agent id")),
    "anchor": ("the accountable human", _text("anchor", least=1, most=MAX_ANCHOR)),
    "skills": ("its skill references", _list_of("skill references (NAME or NAME-vN)", _ref("skill"))),
    "policy": ("its policy reference", _ref("policy")),
    "description": ("", _text("description")),
}
SECTIONS: Mapping[str, tuple[str, Mapping[str, tuple[str, Check]], str]] = {
    "skills": ("a skill", SKILL, "name"),
    "policies": ("a policy", POLICY, "name"),
    "agents": ("an agent", AGENT, "id"),
}
"""Each list of a bundle: what one entry is, its keys (with what a missing required one holds, or
``""`` when it is optional) and the key that names it in problems' paths."""


def _keys(value: dict[str, Any], where: str, known: Iterable[str], required: Mapping[str, str], what: str,
          problems: list[str]) -> None:
    """Unknown keys (with the nearest known one) and missing required ones (with what they hold)."""
    known = list(known)
    for key in value:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            path = f"{where}.{key}" if where else str(key)
            problems.append(f"{path}: unknown key {key!r} ({hint}{what} has {', '.join(known)})")
    for key, meaning in required.items():
        if key not in value:
            problems.append(f"{where or key}: {what} needs {key} ({meaning})")


def _entry(value: Any, where: str, what: str, spec: Mapping[str, tuple[str, Check]], label: str,
           problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where}: {what} is a mapping with {', '.join(spec)}; not {_kind(value)}")
        return
    if isinstance(value.get(label), str):
        where = f"{where} ({value[label]})"
    _keys(value, where, spec, {k: meaning for k, (meaning, _) in spec.items() if meaning}, what, problems)
    for key, (_, check) in spec.items():
        if key in value:
            check(value[key], f"{where}.{key}", problems)


def bundle_problems(data: Any) -> list[str]:
    """Every problem of a bundle (plain data from YAML or JSON), each a sentence after its path."""
    if not isinstance(data, dict):
        return [f"a bundle is a mapping with org, skills, policies and agents; not {_kind(data)}"]
    problems: list[str] = []
    _keys(data, "", ["org", *SECTIONS], {"org": "the org it applies to"}, "a bundle", problems)
    if "org" in data:
        _id("org")(data["org"], "org", problems)
    for section, (what, spec, label) in SECTIONS.items():
        entries = data.get(section, [])
        if not isinstance(entries, list):
            problems.append(f"{section}: must be a list of entries (each {what}), not {_kind(entries)}")
            continue
        for i, entry in enumerate(entries):
            _entry(entry, f"{section}[{i}]", what, spec, label, problems)
    return problems
