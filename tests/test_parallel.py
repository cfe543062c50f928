"""Chunks transformed by worker processes give exactly what the in-process transform gives."""

from __future__ import annotations

import pickle

from airflow_provider_contactsync.core.errors import RowError
from airflow_provider_contactsync.core.parallel import transform_chunks

FORMULAS = {"email": "email.normalizeEmail()", "age": "age.asInt()"}
FIELDS = ["id", "email", "age"]


def chunks() -> list[list[object]]:
    rows = [{"id": i, "email": f" U{i}@X.io ", "age": "x" if i % 7 == 0 else str(i)} for i in range(1, 60)]
    rows.insert(10, RowError("line 12: 2 columns, the header has 3", field=None, value=None))
    return [rows[i : i + 17] for i in range(0, len(rows), 17)]


def test_parallel_equals_in_process_and_keeps_order() -> None:
    serial = list(transform_chunks(chunks(), formulas=FORMULAS, fields=FIELDS, key_field="id", workers=1))
    parallel = list(transform_chunks(chunks(), formulas=FORMULAS, fields=FIELDS, key_field="id", workers=2))
    assert parallel == serial
    passed = [key for result in parallel for key, _ in result[0]]
    assert passed == sorted(passed)
    rejects = [r for result in parallel for r in result[1]]
    (unreadable,) = [r for r in rejects if r.reason.startswith("line 12")]
    assert unreadable.row == 11  # its 1-based position across chunks
    assert {r.row for r in rejects if r is not unreadable} == {i for i in range(1, 60) if i % 7 == 0}


def test_row_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(RowError("bad", field="age", value="x")))
    assert (error.reason, error.field, error.value) == ("bad", "age", "x")


def test_parallel_map_equals_in_process() -> None:
    from airflow_provider_contactsync.core.parallel import map_chunks
    from airflow_provider_contactsync.core.spec import parse_definition

    definition = parse_definition(
        "integration: x\nsource: {name: s, type: file, path: /d, fields: [id, email, age], key: id}\n"
        "mapping: {email: EMAIL, age: AGE}\ndestination: {list_ids: [2]}\n"
    ).model_dump(mode="json")
    attributes = [{"name": "AGE", "category": "normal", "type": "float"}]
    transformed = list(transform_chunks(chunks(), formulas=FORMULAS, fields=FIELDS, key_field="id", workers=1))
    staged = [{"rows": passed, "rejects": rejects} for passed, rejects, _ in transformed]
    staged.append({"rows": [], "rejects": []})
    kwargs = {"definition": definition, "attributes": attributes, "result_types": {"age": "int"}}
    serial = list(map_chunks(staged, workers=1, **kwargs))
    parallel = list(map_chunks(staged, workers=2, **kwargs))
    assert parallel == serial
    items = [item for result in parallel for _, item in result[0]]
    assert items[0] == {"attributes": {"AGE": 1.0}, "email": "u1@x.io"}
    assert sum(result[3] for result in parallel) == 0  # every transformed row maps
