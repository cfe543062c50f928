"""CEL formulas for contactsync: parsed with cel-python's grammar, compiled once to Python.

Public API (stable)::

    compile_formula(text, fields, *, field_types=None) -> Formula
    compile_transform(formulas, fields, *, field_types=None, needed=None, strict_concat=()) -> Transform
    check_transform(formulas, fields, *, field_types=None) -> list[FormulaError]
    FUNCTIONS   # name -> FunctionInfo(arities, description)
    render_reference() -> str   # the Markdown function reference
"""

from __future__ import annotations

from .api import Formula, Transform, check_transform, compile_formula, compile_transform
from .library import FUNCTIONS
from .reference import render_reference

__all__ = [
    "FUNCTIONS",
    "Formula",
    "Transform",
    "check_transform",
    "compile_formula",
    "compile_transform",
    "render_reference",
]
