"""The confirmation file: written after the data file, it tells the reader the file is complete.

It holds the file's name, row count, size, SHA-256, the export time and the filter, as JSON or as
``key=value`` lines, always in that key order (then the caller's ``extra`` keys in their order), so
two runs' files compare line by line.

In ``key=value`` form a value can never start a line of its own: backslash, line breaks, tabs and
other control characters (and U+2028/U+2029, which some readers also split lines on) are written as
``\\\\``, ``\\n``, ``\\r``, ``\\t``, ``\\uXXXX``; :func:`parse_keyvalue` reads them back. A filter
that is a mapping is written as compact JSON on its one line.

Where the file goes is a template such as ``{file}.done`` or ``done/{file}.json``: ``{file}`` is the
data file's name, and it is the only field. Templates are parsed, never formatted as Python would
(``{file.__class__}`` or ``{file:>99999999}`` would otherwise run at render time), and the result
must stay inside the destination's folder. A template that is a URL or an absolute path
(``s3://bucket/confirmations/{file}.json``, for BigQuery, which has no folder) keeps its folder as
written: :func:`render_confirmation_path` gives what ``Destination.write_text`` takes, and
:func:`split_confirmation_location` splits it into the folder (a destination's ``confirmation_path``)
and the name template.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import string
from collections.abc import Mapping
from typing import Any, Literal

ConfirmationFormat = Literal["json", "keyvalue"]
KEYS = ("file", "rows", "size", "sha256", "exported_at", "filter")
"""The keys every confirmation file has, in this order."""

_EXTRA_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ESCAPED = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


def confirmation_text(
    fmt: ConfirmationFormat,
    *,
    file_name: str,
    rows: int,
    size: int,
    sha256: str,
    exported_at: dt.datetime,
    filter: Mapping[str, Any] | str,  # noqa: A002 - the key's name in the file
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The confirmation file's text (ends with a newline).

    :param fmt: ``json`` (one object, indented) or ``keyvalue`` (one ``key=value`` per line).
    :param exported_at: when the export ran: an aware datetime, written in UTC (``2024-05-06T07:08:09Z``).
    :param filter: what was exported, as the export's filter summary or a text.
    :param extra: more keys, after the standard ones: a letter, then letters, digits, ``_ . -``.
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"rows {rows!r}: a count")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size {size!r}: a number of bytes")
    if not _SHA256.match(sha256):
        raise ValueError(f"sha256 {sha256!r}: 64 lower-case hex digits")
    if exported_at.tzinfo is None or exported_at.utcoffset() is None:
        raise ValueError("exported_at must be an aware datetime (a naive one does not say which time zone)")
    if not isinstance(filter, (str, Mapping)):
        raise ValueError(f"filter: a mapping or a text, not {type(filter).__name__}")
    values: dict[str, Any] = {
        "file": file_name,
        "rows": rows,
        "size": size,
        "sha256": sha256,
        "exported_at": _utc(exported_at),
        "filter": filter if isinstance(filter, str) else dict(filter),
    }
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not _EXTRA_KEY.match(key):
            raise ValueError(f"extra key {key!r}: a letter, then letters, digits, '_', '.' or '-'")
        if key in values:
            raise ValueError(f"extra key {key!r} is one of the standard keys ({', '.join(KEYS)})")
        values[key] = value
    if fmt == "json":
        return json.dumps(values, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt == "keyvalue":
        return "".join(f"{key}={_escape(_text(value))}\n" for key, value in values.items())
    raise ValueError(f"confirmation format {fmt!r}: json or keyvalue")


def parse_keyvalue(text: str) -> dict[str, str]:
    """The ``key=value`` lines of :func:`confirmation_text`, values unescaped (for readers and tests)."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise ValueError(f"not a key=value line: {line!r}")
        out[key] = _UNESCAPE.sub(_unescape_one, value)
    return out


def check_confirmation_template(template: str) -> str:
    """The template itself, or ValueError saying what is wrong with it."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"confirmation path {template!r}: {exc} (write '{{{{' and '}}}}' for braces)") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field != "file" or spec or conversion:
            raise ValueError(
                f"confirmation path {template!r}: only {{file}} (the data file's name) can be used, not "
                f"{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
            )
    if not template:
        raise ValueError("confirmation path: empty")
    return template


def confirmation_path(template: str, *, file_name: str) -> str:
    """The confirmation file's path relative to the destination's folder, e.g. ``x.csv.gz.done``."""
    out = []
    for literal, field, _, _ in string.Formatter().parse(check_confirmation_template(template)):
        out.append(literal)
        if field == "file":
            out.append(file_name)
    path = "".join(out)
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts) or re.search(r"[\x00-\x1f\x7f\\]", path):
        raise ValueError(f"confirmation path {template!r} gives {path!r}, which is not a path inside the folder")
    if path == file_name:
        raise ValueError(f"confirmation path {template!r} names the data file itself")
    return path


def render_confirmation_path(template: str, *, file: str) -> str:
    """Where the confirmation of ``file`` goes: a path relative to the destination's folder
    (``x.csv.gz.done``), or a URL / absolute path when the template is one
    (``s3://bucket/confirmations/x.csv.gz.json``); :meth:`Destination.write_text` takes either."""
    folder, name = split_confirmation_location(template)
    if folder is None:
        return confirmation_path(name, file_name=file)
    return f"{folder.rstrip('/')}/{confirmation_path(name, file_name=file)}"


def split_confirmation_location(template: str) -> tuple[str | None, str]:
    """``(folder, name template)``: the folder of a URL or absolute template, None for a relative one.

    ``s3://bucket/confirmations/{file}.json`` -> ``("s3://bucket/confirmations", "{file}.json")``;
    ``{file}.done`` -> ``(None, "{file}.done")``. The folder part cannot hold ``{file}``.
    """
    check_confirmation_template(template)
    if "://" not in template and not template.startswith("/"):
        return None, template
    folder, _, name = template.rpartition("/")
    if "{" in folder or "}" in folder:
        raise ValueError(f"confirmation path {template!r}: {{file}} can only be in the file's name, not its folder")
    if not name:
        raise ValueError(f"confirmation path {template!r} names a folder, not a file (add e.g. {{file}}.done)")
    if folder.endswith(":/"):  # "s3://x.done": a bucket, no key
        raise ValueError(f"confirmation path {template!r}: give a bucket and a file name (s3://bucket/{{file}}.done)")
    if folder:
        from airflow_provider_contactsync.exports.destinations.config import check_storage_url

        check_storage_url(folder, "confirmation path")
    return folder or "/", name


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value, allow_nan=False)
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if isinstance(value, dt.datetime):
        return _utc(value) if value.tzinfo else value.isoformat()
    raise ValueError(f"a confirmation value cannot be a {type(value).__name__}: {value!r}")


def _escape(text: str) -> str:
    return _ESCAPED.sub(lambda m: _SHORT.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


def _unescape_one(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    return {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}.get(code, code)
