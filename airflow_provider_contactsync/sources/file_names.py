"""File names as they travel: a listing may hold names whose bytes are not UTF-8.

Python lists such a name with surrogate escapes (``caf\\udce9.csv`` for the byte 0xE9), which
opens the file but which no JSON store (XCom, the state store), log or report takes. The path is
carried in a reversible form, and shown in a readable one.
"""

from __future__ import annotations


def portable_path(path: str) -> str:
    """``path`` as text every JSON store takes (state store, XCom); :func:`native_path` reverses it.

    A name with bytes that are not UTF-8 arrives from the listing with surrogate escapes, which no
    JSON store accepts. It becomes NUL and its bytes in hex: no real path holds a NUL, so the form is
    never mistaken for a name and reverses exactly.
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return "\0" + path.encode("utf-8", "surrogateescape").hex()


def native_path(text: str) -> str:
    """The path :func:`portable_path` stood for."""
    return bytes.fromhex(text[1:]).decode("utf-8", "surrogateescape") if text.startswith("\0") else text


def display_name(name: str) -> str:
    """A file name as people read it: a byte that is not UTF-8 shown as ``\\xe9``."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no listing makes (not an escaped byte)
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
