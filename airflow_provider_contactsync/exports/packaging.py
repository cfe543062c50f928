"""How an export file is packed: its name from a template, gzip or zip, streamed in constant memory.

A template names the file with the run's date, e.g. ``unsubscribes_{date:%Y-%m-%d}.csv``. Only
``{date}`` (with an optional strftime pattern) and ``{name}`` (the export's name) are allowed, parsed
and never formatted as Python would (``{date.__class__}`` or ``{name:>999999999}`` would otherwise run
at render time), and the result must be a plain file name.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import os
import shutil
import string
import zipfile
from dataclasses import dataclass
from typing import Literal

Compression = Literal["none", "gzip", "zip"]
SUFFIXES = {"none": "", "gzip": ".gz", "zip": ".zip"}
_CHUNK = 1 << 20


def check_template(template: str) -> str:
    """The template itself, or ValueError saying what is wrong with it."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"file name template {template!r}: {exc} (write '{{{{' and '}}}}' for braces)") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in ("date", "name") or conversion or (field == "name" and spec):
            raise ValueError(
                f"file name template {template!r}: only {{date}} (with a strftime pattern, e.g. "
                f"{{date:%Y-%m-%d}}) and {{name}} can be used, not {{{field}}}"
            )
    return template


def file_name(template: str, *, when: dt.datetime, name: str, compression: Compression = "none") -> str:
    """The file name for a run at ``when``, with the compression's suffix added."""
    out = []
    for literal, field, spec, _ in string.Formatter().parse(check_template(template)):
        out.append(literal)
        if field == "date":
            out.append(when.strftime(spec or "%Y-%m-%d"))
        elif field == "name":
            out.append(name)
    result = "".join(out) + SUFFIXES[compression]
    if not result or "/" in result or "\\" in result or result in (".", "..") or "\x00" in result:
        raise ValueError(f"file name template {template!r} gives {result!r}, which is not a plain file name")
    return result


@dataclass(frozen=True)
class Packed:
    path: str
    size: int
    sha256: str


def pack(source: str, target: str, compression: Compression, *, member: str) -> Packed:
    """Compress ``source`` into ``target`` (a zip holds one member named ``member``); size and SHA-256 of the result."""
    if compression == "none":
        shutil.copyfile(source, target)
    elif compression == "gzip":
        with open(source, "rb") as src, gzip.open(target, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    elif compression == "zip":
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(source, arcname=member)
    else:
        raise ValueError(f"unknown compression {compression!r}: none, gzip or zip")
    digest = hashlib.sha256()
    with open(target, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return Packed(target, os.path.getsize(target), digest.hexdigest())
