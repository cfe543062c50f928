"""JSON Schema and Markdown reference, both generated from the typed models (never written twice).

Editors validate definition files with the JSON Schema (``# yaml-language-server: $schema=...``);
the Markdown reference in docs/definition-reference.md is this module's output, kept current by a test.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_contactsync.core.spec.models import SourceDefinition

SCHEMA_ID = "https://contactsync.dev/schemas/source-definition-v1.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one source definition file."""
    schema = SourceDefinition.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def render_reference() -> str:
    """Markdown tables of every key, its type, default and meaning, section by section."""
    schema = json_schema()
    defs = schema.get("$defs", {})
    out = [
        "# Source definition reference",
        "",
        "Generated from the models in `airflow_provider_contactsync/core/spec/models.py` by",
        "`contactsync schema --markdown`. Unknown keys are errors.",
        "",
    ]
    out += _section("Top level", schema, defs)
    for name in sorted(defs):
        out += _section(f"`{name}`", defs[name], defs)
    return "\n".join(out).rstrip() + "\n"


def _section(title: str, schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    props = schema.get("properties", {})
    if not props:
        return []
    required = set(schema.get("required", []))
    lines = [f"## {title}", ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    lines += ["| key | type | required | default | meaning |", "|---|---|---|---|---|"]
    for key, prop in props.items():
        default = json.dumps(prop["default"]) if "default" in prop else ""
        lines.append(
            f"| `{key}` | {_type(prop)} | {'yes' if key in required else ''} | {default} | "
            f"{prop.get('description', '').replace('|', '/')} |"
        )
    return lines + [""]


def _type(prop: dict[str, Any] | bool) -> str:
    if isinstance(prop, bool):
        return "any"
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return " / ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "oneOf" in prop:
        return " or ".join(_type(p) for p in prop["oneOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type(prop['additionalProperties'])}"
    return str(kind)
