"""Markdown reference of the formula functions, generated from the registry (docs/formulas.md)."""

from __future__ import annotations

from .library import LIBRARY, MACRO_DOCS

_GROUPS = (
    ("contactsync", "contactsync functions (null in, null out)"),
    ("standard", "Standard CEL functions"),
    ("strings", "Strings extension (cel-go)"),
    ("timestamp", "Timestamp and date accessors"),
)


def _signature(name: str, params: tuple[str, ...], result: str) -> str:
    if not params:
        return f"{name}() -> {result}"
    receiver, rest = params[0], params[1:]
    return f"{receiver}.{name}({', '.join(rest)}) -> {result}"


def render_reference() -> str:
    """The function reference as Markdown, one table per group."""
    lines: list[str] = []
    for group, title in _GROUPS:
        lines += [f"### {title}", "", "| function | signatures | description | example |", "|---|---|---|---|"]
        for fn in LIBRARY.values():
            if fn.group != group:
                continue
            sigs = "<br>".join(f"`{_signature(fn.name, p, r)}`" for p, r in fn.overloads if "null" not in p[:1])
            example = fn.example.replace("|", "\\|")
            lines.append(f"| `{fn.name}` | {sigs} | {fn.description} | `{example}` |")
        lines.append("")
    lines += ["### Macros", "", "| macro | form | description |", "|---|---|---|"]
    for name, (form, description) in MACRO_DOCS.items():
        lines.append(f"| `{name}` | `{form}` | {description} |")
    lines.append("")
    return "\n".join(lines)
