"""docs/asyncapi.yaml's message schemas, generated from the msgspec types that encode and decode them.

The channels, operations, headers, unions and the OCSF rendering are written by hand in the file.
Every schema named after a msgspec struct of ``claiim_core`` is generated here from that struct
(:func:`msgspec.json.schema_components`): its fields, types, constraints, defaults and required
fields are the code's. What the file adds by hand is kept: each schema's and each field's
``description``, ``examples`` and ``format``. ``scripts/gen-docs`` rewrites the file; a test fails
when the file and the types disagree.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import msgspec
import yaml
from claiim_core import document, events, proofs, schemas

MODULES: tuple[ModuleType, ...] = (schemas, events, proofs, document)
KEPT = ("description", "examples", "format")
"""What the file says about a schema or a field beyond its type, kept when the schema is generated."""


def structs() -> dict[str, type[msgspec.Struct]]:
    """The msgspec structs of the wire modules, by class name."""
    found: dict[str, type[msgspec.Struct]] = {}
    for module in MODULES:
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, msgspec.Struct) and value.__module__ == module.__name__:
                found[name] = value
    return found


def _merge(generated: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in generated.items() if k != "title"}
    for key in KEPT:
        if key in written:
            merged[key] = written[key]
    if "properties" in merged:
        old = written.get("properties", {})
        merged["properties"] = {name: _merge(field, old.get(name, {})) for name, field in merged["properties"].items()}
    return merged


def with_generated_schemas(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with every schema named after a struct generated from it (and the structs they use)."""
    written = doc["components"]["schemas"]
    types = structs()
    wanted = [types[name] for name in written if name in types]
    _, components = msgspec.json.schema_components(wanted, ref_template="#/components/schemas/{name}")
    generated: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(components))  # as JSON has it: no tuples
    out = dict(written)
    for name, schema in generated.items():
        out[name] = _merge(schema, written.get(name, {}))
    return {**doc, "components": {**doc["components"], "schemas": out}}


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
