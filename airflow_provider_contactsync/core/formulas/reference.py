"""Markdown reference of the formula functions, generated from the registry (docs/formulas.md)."""

from __future__ import annotations

from .library import LIBRARY, MACRO_DOCS

_GROUPS = (
    ("contactsync", "contactsync functions (null in, null out)"),
    ("standard", "Standard CEL functions"),
    ("strings", "Strings extension (cel-go)"),
    ("timestamp", "Timestamp and date accessors"),
)


def _signature(name: str, params: tuple[str, ...], result: str, method: bool) -> str:
    if not params or not method:
        return f"{name}({', '.join(params)}) -> {result}"
    receiver, rest = params[0], params[1:]
    return f"{receiver}.{name}({', '.join(rest)}) -> {result}"


def render_reference() -> str:
    """The function reference as Markdown, one table per group."""
    lines: list[str] = []
    for group, title in _GROUPS:
        lines += [
            f"### {title}",
            "",
            "| function | signatures | description | example |",
            "|---|---|---|---|",
        ]
        for fn in LIBRARY.values():
            if fn.group != group:
                continue
            method = group != "standard" or fn.name in (
                "size",
                "contains",
                "startsWith",
                "endsWith",
                "matches",
            )
            sigs = "<br>".join(f"`{_signature(fn.name, p, r, method)}`" for p, r in fn.overloads if "null" not in p[:1])
            example = fn.example.replace("|", "\\|")
            lines.append(f"| `{fn.name}` | {sigs} | {fn.description} | `{example}` |")
        lines.append("")
    lines += ["### Macros", "", "| macro | form | description |", "|---|---|---|"]
    for name, (form, description) in MACRO_DOCS.items():
        lines.append(f"| `{name}` | `{form}` | {description} |")
    lines.append("")
    return "\n".join(lines)


BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m airflow_provider_contactsync.core.formulas.gen_docs) -->"
END = "<!-- END GENERATED REFERENCE -->"


def update_document(text: str) -> str:
    """Replace the generated section between the markers of a Markdown document."""
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n\n{render_reference()}\n{END}{tail or chr(10)}"
