"""Public entry points: compile formulas once, evaluate them on many rows.

``compile_formula`` checks and compiles one formula; ``compile_transform`` compiles a whole
``transform:`` block into one generated function whose ``apply(row)`` never raises for bad data.
Which formulas may reject a row is the caller's to say (``needed``): a failure of any other one
leaves its field null.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import FormulaError, RowError
from .checker import Checker
from .codegen import STEPS_INIT, CodeGen, build, field_prologue, field_var
from .syntax import parse
from .values import TYPE_NAMES

_PUBLIC_TYPES = frozenset(TYPE_NAMES)


def _public_type(name: str) -> str:
    return name if name in _PUBLIC_TYPES else "dyn"


def _as_row_error(exc: Exception) -> RowError:
    if isinstance(exc, RowError):
        return exc
    if isinstance(exc, RecursionError):
        return RowError("value too deeply nested")
    return RowError(f"unexpected {type(exc).__name__}: {exc}")


class Formula:
    """One compiled formula.

    :ivar text: the formula as written.
    :ivar result_type: static CEL type name of the result (``dyn`` when it depends on the data).
    :ivar fields_used: source fields the formula reads.
    """

    __slots__ = ("text", "result_type", "fields_used", "_fn", "source")

    def __init__(
        self,
        text: str,
        result_type: str,
        fields_used: frozenset[str],
        fn: Callable[[Mapping[str, Any]], Any],
        source: str,
    ) -> None:
        self.text = text
        self.result_type = result_type
        self.fields_used = fields_used
        self._fn = fn
        self.source = source

    def evaluate(self, row: Mapping[str, Any]) -> Any:
        """Value of the formula on ``row``; raises :class:`RowError` when the row's data can't work."""
        try:
            return self._fn(row)
        except RowError:
            raise
        except Exception as exc:
            raise _as_row_error(exc) from exc

    def __repr__(self) -> str:
        return f"Formula({self.text!r}, result_type={self.result_type!r})"


class Transform:
    """A compiled ``transform:`` block.

    :ivar formulas: output field -> :class:`Formula` (each also usable on its own).
    :ivar result_types: output field -> static result type.
    :ivar output_fields: source fields in order, then the new fields in definition order.
    :ivar tolerated: output fields whose formula failing does not reject the row (nothing reads them).
    """

    def __init__(
        self,
        formulas: dict[str, Formula],
        fields: list[str],
        apply_fn: Callable[[Mapping[str, Any]], tuple[dict[str, Any], list[RowError]]],
        source: str,
        tolerated: frozenset[str] = frozenset(),
    ) -> None:
        self.formulas = formulas
        self.result_types = {name: f.result_type for name, f in formulas.items()}
        self.output_fields = fields + [name for name in formulas if name not in set(fields)]
        self.tolerated = tolerated
        self._apply = apply_fn
        self.source = source

    def apply(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], list[RowError]]:
        """Transformed row and one :class:`RowError` per formula that failed on it.

        A failed formula's field is absent from the row, or null when it is :attr:`tolerated`;
        :meth:`split` tells the errors that reject the row from the others.
        """
        return self._apply(row)

    def split(self, errors: list[RowError]) -> tuple[list[RowError], list[RowError]]:
        """``(errors that reject the row, errors of tolerated fields)``."""
        tolerated = self.tolerated
        if not tolerated:
            return errors, []
        return [e for e in errors if e.field not in tolerated], [e for e in errors if e.field in tolerated]


def _check(
    text: str, fields: list[str], field_types: Mapping[str, str] | None, key_path: str | None = None
) -> tuple[Any, Checker]:
    try:
        if not isinstance(text, str):
            raise FormulaError(f"a formula must be a string, got {type(text).__name__}")
        if not text.strip():
            raise FormulaError("empty formula")
        node = parse(text)
        checker = Checker(fields, field_types)
        checker.check(node)
    except FormulaError as exc:
        raise exc.located(key_path=key_path) if key_path else exc from None
    return node, checker


def compile_formula(text: str, fields: Iterable[str], *, field_types: Mapping[str, str] | None = None) -> Formula:
    """Parse, check and compile one formula against the source's ``fields``."""
    field_list = list(dict.fromkeys(fields))
    node, checker = _check(text, field_list, field_types)
    gen = CodeGen()
    body = gen.expr(node)
    source = "\n".join(
        [
            "def _formula(row):",
            "    _get = row.get",
            *field_prologue(checker.used),
            *([f"    {STEPS_INIT}"] if gen.counts_steps else []),
            f"    return {body}",
            "",
        ]
    )
    fn = build(source, gen.namespace, "_formula")
    return Formula(text, _public_type(node.type), frozenset(checker.used), fn, source)


def check_transform(
    formulas: Mapping[str, str], fields: Iterable[str], *, field_types: Mapping[str, str] | None = None
) -> list[FormulaError]:
    """Every problem in a transform block (empty when it compiles), each located at ``transform.<name>``."""
    field_list = list(dict.fromkeys(fields))
    errors: list[FormulaError] = []
    for name, text in formulas.items():
        try:
            _check(text, field_list, field_types, key_path=f"transform.{name}")
        except FormulaError as exc:
            errors.append(exc)
    return errors


def compile_transform(
    formulas: Mapping[str, str],
    fields: Iterable[str],
    *,
    field_types: Mapping[str, str] | None = None,
    needed: Iterable[str] | None = None,
    strict_concat: Iterable[str] = (),
) -> Transform:
    """Compile a whole transform into one function.

    Raises the first :class:`FormulaError` (located at ``transform.<name>``); all of them are
    attached as ``.errors`` so a user can fix every formula in one pass.

    :param needed: output fields something reads (the mapping, the payload): a formula failing on
        one of them rejects the row. A formula for any other field that fails leaves its field null
        (see :attr:`Transform.tolerated`). None: every formula is needed.
    :param strict_concat: output fields whose formulas keep CEL's own ``+``, where null + string is
        an error: an identifier must not be made from a missing part.
    """
    field_list = list(dict.fromkeys(fields))
    tolerated = frozenset() if needed is None else frozenset(formulas) - frozenset(needed)
    strict = frozenset(strict_concat)
    checked: dict[str, tuple[Any, Checker]] = {}
    errors: list[FormulaError] = []
    for name, text in formulas.items():
        try:
            checked[name] = _check(text, field_list, field_types, key_path=f"transform.{name}")
        except FormulaError as exc:
            errors.append(exc)
    if errors:
        first = errors[0]
        first.errors = errors  # type: ignore[attr-defined]
        raise first
    gen = CodeGen()
    used: set[str] = set()
    compiled: dict[str, Formula] = {}
    blocks: list[str] = []
    for index, (name, (node, checker)) in enumerate(checked.items()):
        used |= checker.used
        gen.strict_concat = name in strict
        gen.counts_steps = False
        body = gen.expr(node)
        steps = [f"        {STEPS_INIT}"] if gen.counts_steps else []
        single = "\n".join(
            [
                "def _formula(row):",
                "    _get = row.get",
                *field_prologue(checker.used),
                *(line[4:] for line in steps),
                f"    return {body}",
                "",
            ]
        )
        fn = build(single, dict(gen.namespace), "_formula")
        compiled[name] = Formula(formulas[name], _public_type(node.type), frozenset(checker.used), fn, single)
        key = repr(name)
        failed_value = field_var(name) if name in checker.used or name in used else f"_get({key})"
        blocks.append(
            "\n".join(
                [
                    "    try:",
                    *steps,
                    f"        out[{key}] = {body}",
                    f"    except Exception as _e{index}:",
                    f"        out[{key}] = None" if name in tolerated else f"        out.pop({key}, None)",
                    f"        errors.append(_fail(_e{index}, {key}, {failed_value}))",
                ]
            )
        )
    namespace = gen.namespace
    namespace["_fail"] = _fail_for
    source = "\n".join(
        [
            "def _apply(row):",
            "    _get = row.get",
            *field_prologue(used),
            "    out = dict(row)",
            "    errors = []",
            *blocks,
            "    return out, errors",
            "",
        ]
    )
    apply_fn = build(source, namespace, "_apply")
    return Transform(compiled, field_list, apply_fn, source, tolerated)


def _fail_for(exc: Exception, field: str, value: Any) -> RowError:
    return RowError(_as_row_error(exc).reason, field=field, value=value)
