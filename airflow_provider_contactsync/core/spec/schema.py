"""JSON Schema and Markdown reference, both generated from the typed models (never written twice).

Editors validate definition files with the JSON Schema (``# yaml-language-server: $schema=...``);
the Markdown reference in docs/definition-reference.md is this module's output, kept current by a test.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_contactsync.core.spec.export_models import ExportDefinition
from airflow_provider_contactsync.core.spec.limits import LIMITS
from airflow_provider_contactsync.core.spec.models import SourceDefinition

SCHEMA_ID = "https://contactsync.dev/schemas/source-definition-v1.json"
EXPORT_SCHEMA_ID = "https://contactsync.dev/schemas/export-definition-v1.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one source definition file."""
    schema = SourceDefinition.model_json_schema(mode="validation")
    # An events source with a platform preset gets its mapping from the preset (models.expand_events_source).
    schema["required"] = [name for name in schema.get("required", []) if name != "mapping"]
    schema["properties"]["mapping"]["description"] += (
        " Required, except for an events source with a preset (its mapping adds to and overrides the preset's; "
        "null drops an entry)."
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def export_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one export definition file (``kind: export``)."""
    schema = ExportDefinition.model_json_schema(mode="validation")
    # "- EMAIL" is short for "- {attribute: EMAIL}" (export_models._field_entry)
    fields = schema["$defs"]["ExportContent"]["properties"]["fields"]
    attribute = schema["$defs"]["ExportField"]["properties"]["attribute"]
    fields["items"] = {"anyOf": [{"type": "string", "pattern": attribute["pattern"]}, fields["items"]]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": EXPORT_SCHEMA_ID, **schema}


def export_json_schema_text() -> str:
    return json.dumps(export_json_schema(), indent=2, sort_keys=True) + "\n"


def render_export_reference() -> str:
    """Markdown tables of every key of an export definition (docs/export-definition-reference.md)."""
    schema = export_json_schema()
    defs = schema.get("$defs", {})
    out = [
        "# Export definition reference",
        "",
        "Generated from the models in `airflow_provider_contactsync/core/spec/export_models.py` by",
        "`contactsync schema --export --markdown`. An export definition is a YAML file with `kind: export` in",
        "the same definitions folder as source definitions; unknown keys are errors and values are read",
        "strictly, as for sources. Guide: docs/exports.md.",
        "",
    ]
    out += _section("Top level", schema, defs)
    for name in sorted(defs):
        out += _section(f"`{name}`", defs[name], defs)
    return "\n".join(out).rstrip() + "\n"


def render_reference() -> str:
    """Markdown tables of every key, its type, default and meaning, section by section."""
    schema = json_schema()
    defs = schema.get("$defs", {})
    out = [
        "# Source definition reference",
        "",
        "Generated from the models in `airflow_provider_contactsync/core/spec/models.py` by",
        "`contactsync schema --markdown`. Unknown keys are errors, and values are read strictly: `true` is",
        "not a number, `'5'` is not 5, `1e20` is not an integer, `'yes'` is not a boolean. Numbers have the",
        "bounds shown; a value outside them is an error naming its key.",
        "",
    ]
    out += _section("Top level", schema, defs)
    for name in sorted(defs):
        out += _section(f"`{name}`", defs[name], defs)
    out += render_limits()
    return "\n".join(out).rstrip() + "\n"


def render_limits() -> list[str]:
    """The limits on how much work a definition file may ask for (``core/spec/limits.py``)."""
    lines = [
        "## Limits",
        "",
        "Reading a definition is bounded, so that no file can hang or crash the dag-processor, which reads",
        "every definition of a folder in one DAG file within Airflow's DAG-file timeout (30 s by default).",
        "A file over a limit is refused with an error naming the limit; the other definitions' DAGs load.",
        "The limits marked with an environment variable can be raised by setting it wherever definitions",
        "are read (dag-processor, workers, the `contactsync` command); the others protect the parsers and",
        "are fixed. Formulas have limits of their own (length, nesting, work per row): see docs/formulas.md#limits.",
        "",
        "| limit | value | what | why | when you reach it |",
        "|---|---|---|---|---|",
    ]
    for limit in LIMITS:
        value = f"{limit.default:,} {limit.unit}"
        if limit.env:
            value += f" (`{limit.env}`)"
        lines.append(f"| {limit.name} | {value} | {_md(limit.what)} | {_md(limit.why)} | {_md(limit.raise_hint())} |")
    return lines + [""]


def _md(text: str) -> str:
    return text.replace("``", "`").replace("|", "/")


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
        meaning = prop.get("description", "").replace("|", "/")
        bounds = _bounds(prop)
        if bounds:
            meaning = f"{meaning} {bounds}".strip()
        lines.append(f"| `{key}` | {_type(prop)} | {'yes' if key in required else ''} | {default} | {meaning} |")
    return lines + [""]


def _bounds(prop: dict[str, Any]) -> str:
    """The numeric and length bounds of a property, in words (``Between 0 and 604800.``)."""
    for branch in prop.get("anyOf", ()):
        if branch.get("type") != "null":
            prop = {**branch, **{k: v for k, v in prop.items() if k != "anyOf"}}
            break
    if prop.get("type") == "array":
        items = _bounds(prop.get("items", {}))
        return f"Each: {items[0].lower()}{items[1:]}" if items else ""
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum")
    if "exclusiveMinimum" in prop and isinstance(low, int):
        low += 1  # integers above 0 start at 1
    if low is not None and high is not None:
        return f"Between {low} and {high}."
    if high is not None:
        return f"At most {high}."
    if "maxLength" in prop and prop["maxLength"] != prop.get("minLength"):
        return f"At most {prop['maxLength']} characters."
    return ""


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
