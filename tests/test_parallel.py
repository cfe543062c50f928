"""Chunk files transformed and mapped by worker processes give exactly what one process gives."""

from __future__ import annotations

import pickle
from pathlib import Path

from airflow_provider_contactsync.core.errors import RowError
from airflow_provider_contactsync.core.parallel import map_files, transform_files
from airflow_provider_contactsync.core.spec import parse_definition
from airflow_provider_contactsync.staging import decode, encode

FORMULAS = {"email": "email.normalizeEmail()", "age": "age.asInt()"}
FIELDS = ["id", "email", "age"]
DEFINITION = parse_definition(
    "integration: x\nsource: {name: s, type: file, path: /d, fields: [id, email, age], key: id}\n"
    "transform: {email: email.normalizeEmail(), age: age.asInt()}\n"
    "mapping: {email: EMAIL, age: AGE}\ndestination: {list_ids: [2]}\n"
).model_dump(mode="json")
ATTRIBUTES = [{"name": "AGE", "category": "normal", "type": "float"}]


def staged_chunks(folder: Path) -> list[tuple[str, int]]:
    rows: list[object] = [
        {"id": i, "email": f" U{i}@X.io ", "age": "x" if i % 7 == 0 else str(i)} for i in range(1, 60)
    ]
    rows.insert(10, RowError("line 12: 2 columns, the header has 3", field=None, value=None))
    paths, start = [], 1
    for index in range(0, len(rows), 17):
        path = folder / f"extract-{index}.msgpack"
        path.write_bytes(encode(rows[index : index + 17]))
        paths.append((str(path), start))
        start += len(rows[index : index + 17])
    return paths


def run(folder: Path, workers: int) -> tuple[list, list, list]:
    out = folder / f"w{workers}"
    out.mkdir()
    jobs = [(src, str(out / f"t-{i}.msgpack"), start) for i, (src, start) in enumerate(staged_chunks(folder))]
    transformed = list(transform_files(jobs, formulas=FORMULAS, fields=FIELDS, key_field="id", workers=workers))
    map_jobs = [(dst, str(out / f"c-{i}.msgpack")) for i, (_, dst, _) in enumerate(jobs)]
    mapped = list(
        map_files(map_jobs, definition=DEFINITION, attributes=ATTRIBUTES, result_types={"age": "int"}, workers=workers)
    )
    contacts = [decode(Path(dst).read_bytes()) for _, dst in map_jobs]
    return transformed, mapped, contacts


def test_workers_give_the_same_results_in_order(tmp_path: Path) -> None:
    serial = run(tmp_path, 1)
    parallel = run(tmp_path, 2)
    assert parallel == serial
    transformed, mapped, contacts = parallel
    assert sum(rejected for _, rejected in transformed) == 1 + 8  # the unreadable line and ages "x"
    keys = [key for chunk in contacts for key, _ in chunk]
    assert keys == sorted(keys) and 7 not in keys
    assert contacts[0][0] == [1, {"attributes": {"AGE": 1.0}, "email": "u1@x.io"}]
    rejects = [r for _, _, chunk_rejects in mapped for r in chunk_rejects]
    (unreadable,) = [r for r in rejects if r.reason.startswith("line 12")]
    assert unreadable.row == 11  # its 1-based position across chunks
    assert {r.row for r in rejects if r is not unreadable} == {i for i in range(1, 60) if i % 7 == 0}


def test_row_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(RowError("bad", field="age", value="x")))
    assert (error.reason, error.field, error.value) == ("bad", "age", "x")


def test_with_the_definition_only_needed_formulas_reject(tmp_path: Path) -> None:
    definition = parse_definition(
        "integration: x\nsource: {name: s, type: file, path: /d, fields: [id, email, age], key: id}\n"
        "transform: {email: email.normalizeEmail(), age: age.asInt()}\n"
        "mapping: {email: EMAIL}\ndestination: {list_ids: [2]}\n"
    )
    chunks = staged_chunks(tmp_path)
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        jobs = [(src, str(out / f"t-{i}.msgpack"), start) for i, (src, start) in enumerate(chunks)]
        results[workers] = list(
            transform_files(
                jobs, formulas=FORMULAS, fields=FIELDS, key_field="id", workers=workers, definition=definition
            )
        )
    serial, parallel = results[1], results[2]
    assert parallel == serial and [c.tolerated for c in parallel] == [c.tolerated for c in serial]
    assert sum(rejected for _, rejected in serial) == 1  # only the unreadable line: age is not mapped
    assert sum(c.tolerated.get("age", 0) for c in serial) == 8
    row_7 = decode(Path(tmp_path / "w1" / "t-0.msgpack").read_bytes())["rows"][6]
    assert row_7 == [7, {"id": 7, "email": "u7@x.io", "age": None}]  # age "x" left null, the row passed


def test_map_writes_each_chunks_identity_hashes_next_to_it(tmp_path: Path) -> None:
    from airflow_provider_contactsync.core.identifiers import SIDECAR_SUFFIX, IdentityColumns

    run(tmp_path, 2)
    for index in range(4):
        chunk_path = tmp_path / "w2" / f"c-{index}.msgpack"
        written = IdentityColumns.from_bytes((tmp_path / "w2" / f"c-{index}.msgpack{SIDECAR_SUFFIX}").read_bytes())
        expected = IdentityColumns()
        expected.add_chunk(decode(chunk_path.read_bytes()), keyed=True)  # what the load would compute itself
        assert written.columns == expected.columns and len(written) == len(decode(chunk_path.read_bytes()))


def test_worker_chunks_and_their_identity_hashes_are_owner_only(tmp_path: Path) -> None:
    import stat

    run(tmp_path, 2)
    written = [p for p in (tmp_path / "w2").iterdir() if p.name.startswith(("t-", "c-"))]
    assert written and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
