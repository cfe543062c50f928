"""Rows/s of the formula engine against hand-written Python and cel-python, in one run.

    python benchmarks/bench_formulas.py [--rows 50000] [--celpy-rows 2000] [--repeat 5] [--seed 7]

The five-formula transform of the design notes runs through ``Transform.apply``; the baseline is
the same work written by hand, using the same cached phone helper (its cache is cleared before
every timed run, so neither side profits from the other). Phone numbers are mostly unique. The
script checks that ours and the hand-written version give identical rows and row errors.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_contactsync.core.errors import RowError  # noqa: E402
from airflow_provider_contactsync.core.formulas import compile_transform  # noqa: E402
from airflow_provider_contactsync.core.formulas.contactsync import (  # noqa: E402
    normalize_phone_number,
)

FIELDS = ["email", "phone", "firstname", "lastname", "age"]
FORMULAS = {
    "email": "email.normalizeEmail()",
    "phone": 'phone.normalizePhoneNumber("FR")',
    "full_name": "(firstname + ' ' + lastname).trim()",
    "missing": "email.isNull() || phone.isNull()",
    "age": "age.asInt()",
}
FIRST = ["Anne", "Jean", "Marie", "Luc", "Sophie", "Pierre", "Chloé", "Hugo", "Léa", "Nina", "Paul", "Inès"]
LAST = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau"]
DOMAINS = ["example.com", "Mail.FR", "exemple.org", "Corp.example.net"]


def make_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Realistic rows: mostly-unique French numbers in several formats, a few nulls and bad values."""
    rng = random.Random(seed)
    rows = []
    previous: list[str] = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"  {first}.{last}{i}@{rng.choice(DOMAINS)} " if rng.random() > 0.02 else None
        # Metropolitan French mobiles: 060-068 and 073-079 (069x is overseas, 070-072 unallocated)
        prefix = f"6{rng.choice('012345678')}" if rng.random() < 0.75 else f"7{rng.randrange(3, 10)}"
        digits = f"{prefix}{rng.randrange(10**7):07d}"
        style = rng.random()
        if previous and style < 0.05:
            phone = rng.choice(previous)  # some repeats, as in real data
        elif style < 0.35:
            phone = "0" + " ".join([digits[0], *(digits[j : j + 2] for j in range(1, 9, 2))])
        elif style < 0.6:
            phone = "+33 " + digits
        elif style < 0.8:
            phone = "0" + digits[0] + "." + ".".join(digits[j : j + 2] for j in range(1, 9, 2))
        elif style < 0.98:
            phone = "0" + digits
        else:
            phone = rng.choice(["12", "n/a", "+33 1"])  # invalid
        if rng.random() < 0.02:
            phone = None
        previous.append(phone) if phone else None
        age = (
            rng.choice([f"{rng.randrange(18, 90)}", f" {rng.randrange(18, 90)} "])
            if rng.random() > 0.01
            else rng.choice(["4.5", "abc", None])
        )
        rows.append(
            {
                "email": email,
                "phone": phone,
                "firstname": first,
                "lastname": last if rng.random() > 0.01 else None,
                "age": age,
            }
        )
    return rows


def handwritten(row: dict[str, Any]) -> tuple[dict[str, Any], list[RowError]]:
    """The same five formulas written directly in Python, with the same error messages."""
    out = dict(row)
    errors: list[RowError] = []
    email, phone = row.get("email"), row.get("phone")
    first, last, age = row.get("firstname"), row.get("lastname"), row.get("age")
    out["email"] = email.strip().lower() if email is not None else None
    if phone is None:
        out["phone"] = None
    else:
        e164 = normalize_phone_number(phone, ("FR",))
        if e164 is None:
            del out["phone"]
            errors.append(
                RowError(
                    f'normalizePhoneNumber: "{phone}" is not a valid phone number (tried FR)',
                    field="phone",
                    value=phone,
                )
            )
        else:
            out["phone"] = e164
    if type(first) is str and type(last) is str:
        out["full_name"] = (first + " " + last).strip()
    elif (first is None or type(first) is str) and (last is None or type(last) is str):
        out["full_name"] = ((first or "") + " " + (last or "")).strip()  # null next to a string counts as ""
    else:  # not reached: the rows hold strings and nulls
        errors.append(RowError("no such overload", field="full_name", value=None))
    out["missing"] = email is None or phone is None
    if age is None:
        out["age"] = None
    else:
        text = age.strip()
        if text.isdigit():
            out["age"] = int(text)
        else:
            try:
                number = float(text)
            except ValueError:
                number = 0.5
            if number.is_integer():
                out["age"] = int(number)
            else:
                del out["age"]
                errors.append(RowError(f'asInt: "{age}" is not an integer', field="age", value=age))
    return out, errors


def celpy_runner() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """cel-python 0.5 InterpretedRunner with the same custom functions (returning celtypes)."""
    import celpy
    from celpy import celtypes

    def normalize_email(value: Any) -> Any:
        return None if value is None else celtypes.StringType(value.strip().lower())

    def normalize_phone(value: Any, region: Any = None) -> Any:
        if value is None:
            return None
        e164 = normalize_phone_number(str(value), (str(region),) if region else ())
        if e164 is None:
            return celpy.CELEvalError(f"not a valid phone number: {value}")
        return celtypes.StringType(e164)

    def trim(value: Any) -> Any:
        return celtypes.StringType(value.strip())

    def is_null(value: Any) -> Any:
        return celtypes.BoolType(value is None)

    def as_int(value: Any) -> Any:
        if value is None:
            return None
        try:
            return celtypes.IntType(int(str(value).strip()))
        except ValueError:
            return celpy.CELEvalError(f"not an integer: {value}")

    functions = {
        "normalizeEmail": normalize_email,
        "normalizePhoneNumber": normalize_phone,
        "trim": trim,
        "isNull": is_null,
        "asInt": as_int,
    }
    env = celpy.Environment()
    programs = {name: env.program(env.compile(text), functions=functions) for name, text in FORMULAS.items()}

    def run(row: dict[str, Any]) -> dict[str, Any]:
        activation = {k: (celtypes.StringType(v) if v is not None else None) for k, v in row.items()}
        out = dict(row)
        for name, program in programs.items():
            try:
                out[name] = program.evaluate(activation)
            except Exception as exc:  # celpy raises CELEvalError for errors
                out[name] = exc
        return out

    return run


def timed(fn: Callable[[dict[str, Any]], Any], rows: list[dict[str, Any]]) -> float:
    """Rows per CPU-second of one pass, starting with a cold phone cache.

    CPU time of this process (not wall time), so other work on a shared machine skews less.
    """
    normalize_phone_number.cache_clear()
    gc.collect()
    start = time.process_time()
    for row in rows:
        fn(row)
    return len(rows) / (time.process_time() - start)


def best_rates(fns: list[Callable[[dict[str, Any]], Any]], rows: list[dict[str, Any]], repeat: int) -> list[float]:
    """Best rows/s of each function; passes are interleaved so load changes hit all sides alike."""
    best = [0.0] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            best[i] = max(best[i], timed(fn, rows))
    return best


def _comparable(result: tuple[dict[str, Any], list[RowError]]) -> tuple[dict[str, Any], list[tuple]]:
    out, errors = result
    return out, [(e.field, e.value, e.reason) for e in errors]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--celpy-rows", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    rows = make_rows(args.rows, args.seed)
    transform = compile_transform(FORMULAS, FIELDS)

    mismatches = [i for i, row in enumerate(rows) if _comparable(transform.apply(row)) != _comparable(handwritten(row))]
    if mismatches:
        i = mismatches[0]
        print(
            f"MISMATCH on {len(mismatches)} rows; first: {rows[i]}\n  ours: {transform.apply(rows[i])}\n"
            f"  hand: {handwritten(rows[i])}"
        )
        return 1
    error_rows = sum(1 for row in rows if transform.apply(row)[1])
    unique_phones = len({row["phone"] for row in rows})
    print(
        f"{args.rows} rows ({unique_phones} distinct phones, {error_rows} rows with row errors); "
        "ours and hand-written outputs identical"
    )

    hand, ours = best_rates([handwritten, transform.apply], rows, args.repeat)
    sample = rows[: args.celpy_rows]
    celpy_rate = timed(celpy_runner(), sample) if args.celpy_rows else float("nan")

    print(f"{'hand-written Python':<34}{hand:>12,.0f} rows/s")
    print(f"{'contactsync Transform.apply':<34}{ours:>12,.0f} rows/s")
    print(f"{'cel-python InterpretedRunner':<34}{celpy_rate:>12,.0f} rows/s  ({len(sample)} rows)")
    print(f"ours / hand-written = {ours / hand:.2f}")
    print(f"ours / cel-python   = {ours / celpy_rate:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
