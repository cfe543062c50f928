"""The Markdown of a contactsync DAG's doc_md as HTML: only what ``dag_factory.docs`` writes.

Headings, paragraphs, bullet lists (two levels), tables, ``code`` and **bold**. Every piece of text is
escaped first; anything else shows as plain text. Enough for the generated documentation without a
Markdown library in the API server.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def render(text: str) -> Markup:
    out: list[str] = []
    table: list[list[str]] = []
    depth = 0  # open <ul> levels

    def close_lists(to: int = 0) -> None:
        nonlocal depth
        while depth > to:
            out.append("</li></ul>")
            depth -= 1

    def flush_table() -> None:
        if not table:
            return
        head, *body = table
        out.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>")
        out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
        out.append("</tbody></table>")
        table.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            close_lists()
            if not _RULE.match(stripped):
                cells = _CELL_SPLIT.split(stripped[1:-1])
                table.append([_inline(cell.strip().replace("\\|", "|")) for cell in cells])
            continue
        flush_table()
        if not stripped:
            close_lists()
            continue
        bullet = re.match(r"^(\s*)- (.*)$", line)
        if bullet:
            level = 1 + len(bullet.group(1)) // 2
            if level > depth:
                while depth < level:
                    out.append("<ul><li>")
                    depth += 1
            else:
                close_lists(level)
                out.append("</li><li>")
            out.append(_inline(bullet.group(2)))
            continue
        close_lists()
        heading = re.match(r"^(#{1,6}) (.*)$", stripped)
        if heading:
            level = min(len(heading.group(1)) + 1, 6)  # under the page's own headings
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        else:
            out.append(f"<p>{_inline(stripped)}</p>")
    flush_table()
    close_lists()
    return Markup("".join(out))


def _inline(text: str) -> str:
    escaped = str(escape(text))
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)
