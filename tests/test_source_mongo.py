"""MongoSource against mongomock, and against a real server when CONTACTSYNC_TEST_MONGO_URI is set.

Every test taking the ``mongo`` fixture runs twice: on mongomock (always) and on a real server
(``CONTACTSYNC_TEST_MONGO_URI=mongodb://user:password@host:27017/?authSource=admin``; skipped
without it), each real test in a database of its own, dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mongomock
import pymongo
import pytest
from airflow.providers.mongo.hooks.mongo import MongoHook
from bson import Binary, Code, Decimal128, Int64, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS
from cursor_history import Step, check_history, histories, property_settings
from hypothesis import given
from pymongo import monitoring

from airflow_provider_contactsync.core.boundary import SKIP_UNCHANGED
from airflow_provider_contactsync.core.cursor import Cursor, normalize_value
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.spec.models import MongoSource as MongoSpec
from airflow_provider_contactsync.sources import ReadWindow, open_source
from airflow_provider_contactsync.sources.mongo import MongoSource, _native

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
NULL_REASON = "updated_at is null"
LAG_REASON = "updated after the safety lag bound"
REAL_URI = os.environ.get("CONTACTSYNC_TEST_MONGO_URI")
EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"


class ClientHook:
    """Stands in for MongoHook: a ready client, and the connection's schema as default database."""

    def __init__(self, client: Any, schema: str | None) -> None:
        self.client = client
        self.connection = SimpleNamespace(schema=schema)

    def get_conn(self) -> Any:
        return self.client


class Mongo:
    """The test's database: documents to set up, and sources reading them."""

    def __init__(self, client: Any, database: str, *, emulated: bool) -> None:
        self.client = client
        self.database = database
        self.emulated = emulated

    @property
    def db(self) -> Any:
        return self.client[self.database]

    def insert(self, *documents: dict[str, Any], collection: str = "users") -> None:
        self.db[collection].insert_many(list(documents))

    def source(self, **overrides: Any) -> MongoSource:
        spec: dict[str, Any] = {
            "type": "mongo",
            "name": "users",
            "conn_id": "app_mongo",
            "collection": "users",
            "fields": ["_id", "email", "updated_at"],
        }
        spec.update(overrides)
        return MongoSource(MongoSpec.model_validate(spec), hook=ClientHook(self.client, self.database))

    def incremental(self, **overrides: Any) -> MongoSource:
        return self.source(**{"updated_field": "updated_at", "key": "_id", **overrides})

    def real_only(self, why: str) -> None:
        if self.emulated:
            pytest.skip(f"mongomock: {why}")


@pytest.fixture(params=["mongomock", "real"])
def mongo(request: pytest.FixtureRequest) -> Iterator[Mongo]:
    if request.param == "mongomock":
        yield Mongo(mongomock.MongoClient(), "app", emulated=True)
        return
    if not REAL_URI:
        pytest.skip("no real MongoDB: set CONTACTSYNC_TEST_MONGO_URI=mongodb://... to run these against one")
    client: Any = pymongo.MongoClient(REAL_URI, serverSelectionTimeoutMS=5000)
    database = f"contactsync_test_{uuid.uuid4().hex[:12]}"
    try:
        yield Mongo(client, database, emulated=False)
    finally:
        client.drop_database(database)
        client.close()


def oid(i: int) -> ObjectId:
    """ObjectIds in a known order (their hex string orders the same)."""
    return ObjectId(f"{i:024x}")


def users(count: int, *, per_hour: int = 1, key: str = "oid") -> list[dict[str, Any]]:
    """``count`` users; ``per_hour`` consecutive ones share each updated_at (ties); inserted in reverse."""
    docs = [
        {
            "_id": oid(i) if key == "oid" else i,
            "email": f"u{i}@example.com",
            "updated_at": T0 + dt.timedelta(hours=(i - 1) // per_hour),
        }
        for i in range(1, count + 1)
    ]
    return docs[::-1]


def read_all(source: MongoSource, window: ReadWindow | None = None, chunk_size: int = 1000) -> list[Any]:
    return [row for chunk in source.read(window or ReadWindow(), chunk_size=chunk_size) for row in chunk]


def ids(rows: list[dict[str, Any]]) -> list[Any]:
    return [row["_id"] for row in rows]


def hexes(*numbers: int) -> list[str]:
    return [str(oid(i)) for i in numbers]


def stored(row: dict[str, Any], field: str = "updated_at", key: str = "_id") -> Cursor:
    """The cursor the extract task stores after ``row``, as the next run reads it back (JSON)."""
    cursor = Cursor.from_json(json.loads(json.dumps(Cursor(normalize_value(row[field]), row[key]).to_json())))
    assert cursor is not None
    return cursor


# -- full reads --------------------------------------------------------------------------------


def test_full_read_yields_chunks_of_chunk_size_with_exactly_the_fields(mongo: Mongo) -> None:
    mongo.insert(*users(25))
    source = mongo.source()

    chunks = list(source.read(ReadWindow(), chunk_size=10))

    assert [len(chunk) for chunk in chunks] == [10, 10, 5]
    rows = [row for chunk in chunks for row in chunk]
    assert sorted(ids(rows)) == hexes(*range(1, 26))
    assert all(list(row) == ["_id", "email", "updated_at"] for row in rows)
    assert source.skipped == {}


def test_non_incremental_source_ignores_the_window(mongo: Mongo) -> None:
    mongo.insert(*users(5))

    rows = read_all(mongo.source(), ReadWindow(Cursor(T0 + dt.timedelta(hours=3), str(oid(4))), T0))

    assert sorted(ids(rows)) == hexes(1, 2, 3, 4, 5)


def test_id_is_left_out_unless_a_field(mongo: Mongo) -> None:
    mongo.insert(*users(2))

    rows = read_all(mongo.source(fields=["email"]))

    assert sorted(rows, key=lambda r: r["email"]) == [{"email": "u1@example.com"}, {"email": "u2@example.com"}]


def test_empty_collection_reads_nothing(mongo: Mongo) -> None:
    mongo.db.create_collection("users")
    source = mongo.incremental()

    assert read_all(source, ReadWindow(Cursor(T0, str(oid(1))), T0)) == []
    assert source.skipped == {}


# -- incremental reads -------------------------------------------------------------------------


def test_incremental_read_is_in_updated_key_order(mongo: Mongo) -> None:
    docs = users(12, per_hour=4)
    docs[0]["updated_at"] = T0 - dt.timedelta(days=1)  # user 12 is now the oldest
    mongo.insert(*docs)

    rows = read_all(mongo.incremental(), chunk_size=5)

    assert ids(rows) == hexes(12, *range(1, 12))
    assert rows[1]["updated_at"] == T0 and rows[1]["updated_at"].tzinfo is not None


def test_objectid_ties_at_the_cursor_s_date_are_read_again_whole(mongo: Mongo) -> None:
    mongo.insert(*users(30, per_hour=10))
    source = mongo.incremental()

    first_run = next(iter(source.read(ReadWindow(), chunk_size=7)))  # run 1 stops after a chunk
    cursor = stored(first_run[-1])
    second_run = read_all(source, ReadWindow(cursor), chunk_size=7)

    assert cursor.key == str(oid(7)) and cursor.value == T0  # the hex string is what is stored
    assert ids(second_run) == hexes(*range(1, 31))  # T0 from its first ObjectId on, then the rest


def test_a_late_commit_at_the_cursor_s_date_below_its_key_is_read_by_the_next_run(mongo: Mongo) -> None:
    mongo.insert(*users(20, per_hour=10))
    source = mongo.incremental()
    until = T0 + dt.timedelta(hours=2)
    cursor = stored(read_all(source, ReadWindow(until=until), chunk_size=7)[-1])
    assert (cursor.value, cursor.key) == (T0 + dt.timedelta(hours=1), str(oid(20)))
    # Committed after the run, dated the cursor's own instant: a new document and an update, ObjectIds below.
    at = cursor.value.replace(tzinfo=None)
    mongo.insert({"_id": oid(0), "email": "late@example.com", "updated_at": at})
    mongo.db.users.update_one({"_id": oid(3)}, {"$set": {"email": "changed@example.com", "updated_at": at}})

    second_run = read_all(source, ReadWindow(cursor, until), chunk_size=7)

    assert ids(second_run) == hexes(0, 3, *range(11, 21))  # the late ones, then the boundary read again
    assert [r["email"] for r in second_run[:2]] == ["late@example.com", "changed@example.com"]


def test_int_key_ties_across_runs(mongo: Mongo) -> None:
    mongo.insert(*users(20, per_hour=10, key="int"))
    source = mongo.incremental()

    first_run = next(iter(source.read(ReadWindow(), chunk_size=13)))
    second_run = read_all(source, ReadWindow(stored(first_run[-1])))

    assert ids(first_run) == list(range(1, 14)) and ids(second_run) == list(range(11, 21))
    assert read_all(source, ReadWindow(Cursor(T0, 5))) == read_all(source)


class History:
    """The collection the cursor property test (tests/cursor_history.py) commits to and reads."""

    key_field = "_id"

    def __init__(self, mongo: Mongo) -> None:
        self.mongo = mongo

    def reset(self) -> None:
        self.mongo.db.drop_collection("users")
        self.mongo.db.create_collection("users")

    def commit(self, rows: dict[int, tuple[str, dt.datetime]]) -> None:
        for key, (email, at) in rows.items():  # mongomock's bulk_write does not take pymongo 4.9's ReplaceOne
            self.mongo.db.users.replace_one({"_id": key}, {"email": email, "updated_at": at}, upsert=True)

    def source(self) -> MongoSource:
        return self.mongo.incremental()


@property_settings(max_examples=150)
@given(history=histories())
def test_property_no_commit_is_missed_at_the_cursor_boundary(mongo: Mongo, history: list[Step]) -> None:
    check_history(History(mongo), history)


def test_string_keys_break_ties_in_code_point_order_like_the_cursor(mongo: Mongo) -> None:
    mongo.insert(*({"_id": k, "email": f"{k}@x.io", "updated_at": T0} for k in ["b", "é", "B", "a", "z"]))
    source = mongo.incremental()

    assert ids(read_all(source)) == ["B", "a", "b", "z", "é"]
    assert ids(read_all(source, ReadWindow(Cursor(T0, "b")))) == ["B", "a", "b", "z", "é"]  # the boundary, same order
    assert Cursor(T0, "z").is_before(T0, "é") and Cursor(T0, "B").is_before(T0, "a")  # core/cursor.py agrees


def test_string_keys_ignore_a_case_insensitive_default_collation(mongo: Mongo) -> None:
    mongo.real_only("collations are ignored")
    mongo.db.create_collection("users", collation={"locale": "en", "strength": 2})
    mongo.insert(*({"_id": k, "email": f"{k}@x.io", "updated_at": T0} for k in ["b", "B", "a"]))

    assert ids(read_all(mongo.incremental())) == ["B", "a", "b"]


def test_until_bound_leaves_later_documents_for_the_next_run_and_counts_them(mongo: Mongo) -> None:
    mongo.insert(*users(10))  # one per hour from T0
    source = mongo.incremental()

    rows = read_all(source, ReadWindow(Cursor(T0, str(oid(1))), T0 + dt.timedelta(hours=5)))

    assert ids(rows) == hexes(1, 2, 3, 4, 5, 6)  # both bounds are inclusive: T0 read again, T0 + 5h read
    assert source.skipped == {LAG_REASON: 4}


def test_skipped_counts_only_documents_inside_the_cursor_s_window(mongo: Mongo) -> None:
    mongo.insert(*users(10))
    source = mongo.incremental()

    read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(hours=8), str(oid(9))), T0 + dt.timedelta(hours=2)))

    assert source.skipped == {LAG_REASON: 2}  # users 9 (the boundary) and 10 wait; 1-8 are behind the cursor


def test_until_compares_instants_whatever_the_offset(mongo: Mongo) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    mongo.insert(
        {"_id": 1, "email": "a@x.io", "updated_at": dt.datetime(2024, 3, 1, 13, 0, tzinfo=paris)},  # 12:00 UTC
        {"_id": 2, "email": "b@x.io", "updated_at": dt.datetime(2024, 3, 1, 13, 1, tzinfo=paris)},  # 12:01 UTC
    )
    source = mongo.incremental()

    rows = read_all(source, ReadWindow(until=dt.datetime(2024, 3, 1, 7, 0, tzinfo=dt.timezone(-dt.timedelta(hours=5)))))

    assert rows == [{"_id": 1, "email": "a@x.io", "updated_at": T0}]
    assert source.skipped == {LAG_REASON: 1}


def test_null_and_missing_cursor_are_counted_as_skipped(mongo: Mongo) -> None:
    docs = users(6)
    docs[1]["updated_at"] = None  # user 5
    del docs[4]["updated_at"]  # user 2
    mongo.insert(*docs)
    source = mongo.incremental()

    rows = read_all(source, ReadWindow(until=T0 + dt.timedelta(days=1)))

    assert ids(rows) == hexes(1, 3, 4, 6)
    assert source.skipped == {NULL_REASON: 2}


def test_skipped_is_reset_on_each_read(mongo: Mongo) -> None:
    docs = users(3)
    docs[0]["updated_at"] = None
    mongo.insert(*docs)
    source = mongo.incremental()
    read_all(source)

    read_all(source)

    assert source.skipped == {NULL_REASON: 1}


def test_cursor_values_of_another_bson_type_are_counted_not_lost_silently(mongo: Mongo) -> None:
    docs = users(6)
    docs[0]["updated_at"] = "2024-03-01T18:00:00Z"  # user 6: a string date
    docs[1]["updated_at"] = 1709316000  # user 5: epoch seconds
    docs[2]["updated_at"] = [T0]  # user 4: an array
    mongo.insert(*docs)
    source = mongo.incremental()

    rows = read_all(source, ReadWindow(until=T0 + dt.timedelta(days=1)))

    assert ids(rows) == hexes(1, 2, 3)
    assert source.skipped == {"updated_at has another BSON type than date": 3}


def test_keys_of_another_bson_type_are_counted(mongo: Mongo) -> None:
    mongo.insert(*users(3), {"_id": "legacy-7", "email": "l@x.io", "updated_at": T0})
    source = mongo.incremental()

    rows = read_all(source, ReadWindow(until=T0 + dt.timedelta(days=1)))

    assert ids(rows) == hexes(1, 2, 3)
    assert source.skipped == {"_id has another BSON type than objectId": 1}


def test_version_number_cursor_ignores_the_time_bound(mongo: Mongo) -> None:
    mongo.insert(
        *({"_id": i, "email": f"u{i}@x.io", "version": Int64(100 + i) if i % 2 else 100 + i} for i in range(1, 6))
    )
    mongo.insert({"_id": 6, "email": "f@x.io", "version": 105.5})
    source = mongo.source(fields=["_id", "email", "version"], updated_field="version", key="_id")

    rows = read_all(source, ReadWindow(stored({"version": 102, "_id": 2}, "version"), T0))

    assert ids(rows) == [2, 3, 4, 5, 6]  # version 102 read again
    assert [r["version"] for r in rows] == [102, 103, 104, 105, 105.5]
    assert type(rows[0]["version"]) is int and type(rows[1]["version"]) is int
    assert source.skipped == {}


def test_decimal128_cursor(mongo: Mongo) -> None:
    mongo.real_only("it cannot compare or sort Decimal128 values")
    mongo.insert(*({"_id": i, "email": f"u{i}@x.io", "score": Decimal128(f"{i}.25")} for i in range(1, 5)))
    source = mongo.source(fields=["_id", "email", "score"], updated_field="score", key="_id")

    rows = read_all(source, ReadWindow(stored({"score": Decimal("2.25"), "_id": 2}, "score")))

    assert [(r["_id"], r["score"]) for r in rows] == [(2, Decimal("2.25")), (3, Decimal("3.25")), (4, Decimal("4.25"))]


def test_dates_win_over_other_types_when_a_cursor_field_holds_both(mongo: Mongo) -> None:
    docs = users(3)
    docs[2]["updated_at"] = "legacy"  # user 1, first in natural order... after the reversal, last
    mongo.insert(docs[2], docs[0], docs[1])

    source = mongo.incremental()

    assert ids(read_all(source, ReadWindow(until=T0 + dt.timedelta(days=1)))) == hexes(2, 3)
    assert source.skipped == {"updated_at has another BSON type than date": 1}


@pytest.mark.parametrize("value", ["2024-03-01", True, {"at": 1}], ids=["string", "bool", "object"])
def test_cursor_field_that_cannot_order_documents_is_refused(mongo: Mongo, value: Any) -> None:
    mongo.insert({"_id": 1, "email": "a@x.io", "updated_at": value}, {"_id": 2, "email": "b@x.io"})

    with pytest.raises(ConfigurationError, match="updated_field 'updated_at' holds") as caught:
        read_all(mongo.incremental())

    assert caught.value.key_path == "source.updated_field"


def test_key_of_a_type_that_cannot_break_ties_is_refused(mongo: Mongo) -> None:
    mongo.insert({"_id": 1, "ref": T0, "email": "a@x.io", "updated_at": T0})

    with pytest.raises(ConfigurationError, match="key 'ref' holds date") as caught:
        read_all(mongo.incremental(fields=["ref", "email", "updated_at"], key="ref"))

    assert caught.value.key_path == "source.key"


def test_a_stored_cursor_of_another_type_asks_for_a_full_refresh(mongo: Mongo) -> None:
    mongo.insert(*users(2))

    with pytest.raises(ConfigurationError, match="full_refresh") as caught:
        read_all(mongo.incremental(), ReadWindow(Cursor(5, str(oid(1)))))
    assert caught.value.key_path == "source.updated_field"

    # The stored key is not part of the query (the boundary is read whole): its type does not matter.
    assert ids(read_all(mongo.incremental(), ReadWindow(Cursor(T0, "not-an-objectid")))) == hexes(1, 2)


def test_cursor_values_are_bson_values_not_query_text(mongo: Mongo) -> None:
    nasty = '"}, {"$where": "sleep(1000)"}'
    mongo.insert(*({"_id": k, "email": "x@x.io", "updated_at": T0} for k in ["a", nasty, "{$gt: ''}"]))
    source = mongo.incremental()

    assert ids(read_all(source, ReadWindow(Cursor(T0, nasty)))) == [nasty, "a", "{$gt: ''}"]
    assert ids(read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(seconds=1), "{$gt: ''}")))) == []
    assert mongo.db.users.count_documents({}) == 3


# -- filter and pipeline -----------------------------------------------------------------------


def test_filter_is_combined_with_the_window(mongo: Mongo) -> None:
    docs = users(8)
    for doc in docs:
        doc["deleted"] = int(str(doc["_id"]), 16) % 2 == 0
    mongo.insert(*docs)
    source = mongo.incremental(filter={"deleted": {"$ne": True}})

    rows = read_all(source, ReadWindow(Cursor(T0, str(oid(1))), T0 + dt.timedelta(hours=5)))

    assert ids(rows) == hexes(1, 3, 5)
    assert source.skipped == {LAG_REASON: 1}  # user 7; the deleted user 8 is not counted


def test_pipeline_gets_the_window_appended(mongo: Mongo) -> None:
    mongo.insert(
        *(
            {"_id": i, "profile": {"mail": f"U{i}@X.IO"}, "changes": [T0 + dt.timedelta(hours=i), T0], "kind": "user"}
            for i in range(1, 7)
        ),
        {"_id": 7, "profile": {"mail": "bot@x.io"}, "changes": [T0], "kind": "bot"},
    )
    pipeline = [
        {"$match": {"kind": "user"}},
        {"$project": {"email": {"$toLower": "$profile.mail"}, "updated_at": {"$max": "$changes"}}},
    ]
    source = mongo.incremental(pipeline=pipeline, fields=["_id", "email", "updated_at"])

    rows = read_all(source, ReadWindow(Cursor(T0 + dt.timedelta(hours=2), 2), T0 + dt.timedelta(hours=5)), chunk_size=2)

    assert rows == [{"_id": i, "email": f"u{i}@x.io", "updated_at": T0 + dt.timedelta(hours=i)} for i in (2, 3, 4, 5)]
    assert source.skipped == {LAG_REASON: 1}
    assert source.discover() == ["_id", "email", "updated_at"]


def test_key_dropped_by_the_pipeline_is_refused_before_reading(mongo: Mongo) -> None:
    mongo.insert(*users(3))
    source = mongo.incremental(
        key="user_id",
        fields=["user_id", "email", "updated_at"],
        pipeline=[{"$project": {"_id": 0, "email": 1, "updated_at": 1}}],
    )

    with pytest.raises(
        ConfigurationError, match="no document of the pipeline's output has the key 'user_id'"
    ) as caught:
        read_all(source)

    assert caught.value.key_path == "source.key"
    assert "['email', 'updated_at']" in str(caught.value)


# -- values ------------------------------------------------------------------------------------


def test_nested_fields_and_missing_parts_are_null(mongo: Mongo) -> None:
    mongo.insert(
        {"_id": 1, "address": {"city": "Paris", "geo": {"lat": 48.85}}},
        {"_id": 2, "address": {"zip": "75001"}},
        {"_id": 3},
        {"_id": 4, "address": "unknown"},
        {"_id": 5, "address": None},
    )
    source = mongo.source(fields=["_id", "address.city", "address.geo.lat"])

    rows = sorted(read_all(source), key=lambda r: r["_id"])

    assert rows == [
        {"_id": 1, "address.city": "Paris", "address.geo.lat": 48.85},
        {"_id": 2, "address.city": None, "address.geo.lat": None},
        {"_id": 3, "address.city": None, "address.geo.lat": None},
        {"_id": 4, "address.city": None, "address.geo.lat": None},
        {"_id": 5, "address.city": None, "address.geo.lat": None},
    ]


def test_arrays_become_lists_converted_inside(mongo: Mongo) -> None:
    mongo.insert(
        {"_id": 1, "tags": ["vip", "beta"], "orders": [{"id": oid(9), "at": dt.datetime(2024, 3, 1), "n": Int64(2)}]},
        {"_id": 2, "tags": [], "orders": None},
    )

    rows = sorted(read_all(mongo.source(fields=["_id", "tags", "orders"])), key=lambda r: r["_id"])

    assert rows == [
        {"_id": 1, "tags": ["vip", "beta"], "orders": [{"id": str(oid(9)), "at": T0.replace(hour=0), "n": 2}]},
        {"_id": 2, "tags": [], "orders": None},
    ]


def test_type_table(mongo: Mongo) -> None:
    token = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    values: dict[str, Any] = {
        "string": "text",
        "bool": True,
        "int": 7,
        "long": Int64(2**40),
        "double": 0.5,
        "decimal": Decimal128("12.50"),
        "date": dt.datetime(2024, 3, 1, 12, 0, 0, 123000),
        "object_id": oid(255),
        "binary": Binary(b"\x00\xff"),
        "uuid": Binary(token.bytes, 4),
        "object": {"a": {"b": Decimal128("1.5"), "c": [Int64(3)]}},
        "array": [1, "x", {"y": oid(1)}, [True]],
        "null": None,
        "timestamp": Timestamp(1700000000, 1),
        "regex": Regex("^a", "i"),
        "code": Code("x = 1"),
        "min_key": MinKey(),
    }
    mongo.insert({"_id": 1, **values})

    [row] = read_all(mongo.source(fields=["_id", *values]))

    expected = {
        "_id": 1,
        "string": "text",
        "bool": True,
        "int": 7,
        "long": 2**40,
        "double": 0.5,
        "decimal": Decimal("12.50"),
        "date": dt.datetime(2024, 3, 1, 12, 0, 0, 123000, tzinfo=UTC),
        "object_id": "0000000000000000000000ff",
        "binary": b"\x00\xff",
        "uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "object": {"a": {"b": Decimal("1.5"), "c": [3]}},
        "array": [1, "x", {"y": "000000000000000000000001"}, [True]],
        "null": None,
        "timestamp": "Timestamp(1700000000, 1)",
        "code": "x = 1",
        "min_key": "MinKey()",
    }
    assert {k: v for k, v in row.items() if k != "regex"} == expected
    assert isinstance(row["regex"], str) and "^a" in row["regex"]
    natives = (type(None), bool, int, float, str, bytes, Decimal, dt.datetime, dict, list)
    assert all(type(v) in natives for v in row.values())  # plain types: no bson subclass left
    assert type(row["long"]) is int and type(row["code"]) is str
    assert row["date"].utcoffset() == dt.timedelta(0)


def test_a_value_that_cannot_convert_rejects_only_its_row(mongo: Mongo) -> None:
    mongo.insert(
        {"_id": 1, "email": "a@x.io", "born": dt.datetime(1990, 1, 1)},
        {"_id": 2, "email": "b@x.io", "born": DatetimeMS(2**62)},  # far beyond year 9999
        {"_id": 3, "email": "c@x.io", "born": None},
    )

    rows = read_all(mongo.source(fields=["_id", "email", "born"], key="_id"))

    [error] = [r for r in rows if isinstance(r, RowError)]
    assert error.field == "born" and "outside the years 1-9999" in error.reason
    assert error.row == 2  # the error report names the document
    assert sorted(r["_id"] for r in rows if not isinstance(r, RowError)) == [1, 3]


def test_malformed_uuid_is_a_row_error() -> None:
    with pytest.raises(ValueError, match="3 bytes instead of 16"):
        _native(Binary(b"abc", 4))


def test_missing_collection_is_a_configuration_error_listing_what_exists(mongo: Mongo) -> None:
    mongo.insert({"_id": 1}, collection="customers")
    mongo.insert({"_id": 1}, collection="orders")

    with pytest.raises(
        ConfigurationError, match=r"has no collection 'users'; it has \['customers', 'orders'\]"
    ) as caught:
        read_all(mongo.source())

    assert caught.value.key_path == "source.collection"


def test_a_field_no_document_has_is_refused_but_a_sparse_one_is_null(mongo: Mongo) -> None:
    mongo.insert({"_id": 1, "email": "a@x.io"}, {"_id": 2, "email": "b@x.io", "phone": "+33612345678"})

    rows = sorted(read_all(mongo.source(fields=["_id", "email", "phone"])), key=lambda r: r["_id"])
    assert [r["phone"] for r in rows] == [None, "+33612345678"]

    with pytest.raises(ConfigurationError, match=r"no document of collection users has 'emial'") as caught:
        read_all(mongo.source(fields=["_id", "emial"]))
    assert caught.value.key_path == "source.fields"


def test_the_database_comes_from_the_spec_or_the_connection(mongo: Mongo) -> None:
    mongo.insert(*users(1))
    spec = MongoSpec(type="mongo", name="u", conn_id="c", collection="users", fields=["email"])

    assert read_all(MongoSource(spec, hook=ClientHook(mongo.client, mongo.database))) == [{"email": "u1@example.com"}]
    named = spec.model_copy(update={"database": mongo.database})
    assert read_all(MongoSource(named, hook=ClientHook(mongo.client, "other"))) == [{"email": "u1@example.com"}]
    with pytest.raises(ConfigurationError, match="no database") as caught:
        read_all(MongoSource(spec, hook=ClientHook(mongo.client, None)))
    assert caught.value.key_path == "source.database"


# -- discovery and connection test -------------------------------------------------------------


def test_discover_lists_dotted_paths_of_the_first_documents(mongo: Mongo) -> None:
    mongo.insert(
        {"_id": 1, "email": "a@x.io", "address": {"city": "Paris", "geo": {"lat": 1.0}}},
        {"_id": 2, "phone": "1", "address": {"zip": "75001"}, "tags": [{"name": "x"}], "bad-name": 1},
    )

    assert mongo.source().discover() == [
        "_id",
        "email",
        "address",
        "address.city",
        "address.geo",
        "address.geo.lat",
        "phone",
        "address.zip",
        "tags",
    ]


def test_list_tables_names_the_collections(mongo: Mongo) -> None:
    mongo.insert({"_id": 1}, collection="users")
    mongo.insert({"_id": 1}, collection="events")

    assert mongo.source().list_tables() == ["events", "users"]


def test_test_connection_reports_success_and_problems(mongo: Mongo) -> None:
    mongo.insert(*users(1))

    ok, message = mongo.source().test_connection()
    assert ok and f"{mongo.database}.users" in message and message.startswith("MongoDB ")

    ok, message = mongo.source(fields=["_id", "nope"]).test_connection()
    assert not ok and "'nope'" in message

    ok, message = mongo.source(collection="customers").test_connection()
    assert not ok and "no collection 'customers'" in message


def test_test_connection_never_raises_for_an_unreachable_server() -> None:
    class Unreachable:
        connection = SimpleNamespace(schema="app")

        def get_conn(self) -> Any:
            raise pymongo.errors.ServerSelectionTimeoutError("db.example:27017: timed out")

    spec = MongoSpec(type="mongo", name="u", conn_id="app_mongo", collection="users", fields=["email"])

    ok, message = MongoSource(spec, hook=Unreachable()).test_connection()

    assert not ok and "app_mongo" in message and "timed out" in message


def test_open_source_builds_the_provider_hook_from_conn_id(monkeypatch: pytest.MonkeyPatch) -> None:
    client = mongomock.MongoClient()
    client.appdb.users.insert_many(users(2))
    conn = {"conn_type": "mongo", "host": "mongo.invalid", "schema": "appdb", "login": "app", "password": "s3cret"}
    monkeypatch.setenv("AIRFLOW_CONN_APP_MONGO", json.dumps(conn))
    monkeypatch.setattr(MongoHook, "get_conn", lambda self: client)
    spec = MongoSpec(type="mongo", name="u", conn_id="app_mongo", collection="users", fields=["email"])

    source = open_source(spec)

    assert isinstance(source, MongoSource)
    assert sorted(r["email"] for r in read_all(source)) == ["u1@example.com", "u2@example.com"]
    ok, message = source.test_connection()
    assert ok and "s3cret" not in message

    def refuse(self: Any) -> Any:
        raise pymongo.errors.OperationFailure(f"bad auth for mongodb://app:{self.connection.password}@mongo.invalid")

    monkeypatch.setattr(MongoHook, "get_conn", refuse)
    ok, message = source.test_connection()
    assert not ok and "bad auth" in message and "s3cret" not in message


def test_reads_fetch_chunk_size_documents_per_batch(mongo: Mongo) -> None:
    mongo.real_only("no wire protocol, so no batches to observe")

    class Commands(monitoring.CommandListener):
        def __init__(self) -> None:
            self.seen: list[dict[str, Any]] = []

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            self.seen.append({"name": event.command_name, **event.command})

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    listener = Commands()
    mongo.insert(*users(25))
    client: Any = pymongo.MongoClient(REAL_URI, event_listeners=[listener])
    try:
        source = MongoSource(mongo.incremental().spec, hook=ClientHook(client, mongo.database))
        sizes = [len(chunk) for chunk in source.read(ReadWindow(), chunk_size=10)]
    finally:
        client.close()

    seen = listener.seen
    [find] = [c for c in seen if c["name"] == "find" and "sort" in c]
    get_mores = [c for c in seen if c["name"] == "getMore"]
    assert sizes == [10, 10, 5]
    assert find["batchSize"] == 10 and dict(find["sort"]) == {"updated_at": 1, "_id": 1}
    assert get_mores and all(c["batchSize"] == 10 for c in get_mores)


# -- end to end: the example definition as DAG runs --------------------------------------------


def example_dag(mongo: Mongo, tmp_path: Path, brevo_sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example definition on a small collection, as a function running its DAG once."""
    from servers.airflow_db import run_dag

    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    mongo.insert(
        {
            "_id": oid(1),
            "email": " Ada@Example.com ",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "phone": "06 12 34 56 78",
            "address": {"city": "Paris", "country": "FR"},
            "tags": ["vip", "beta"],
            "updated_at": T0,
        },
        {
            "_id": oid(2),
            "email": "alan@example.org",
            "first_name": "Alan",
            "address": {"country": "GB"},
            "updated_at": T0,  # a tie with Ada, broken by _id
        },
        {
            "_id": oid(3),
            "email": "grace@example.com",
            "first_name": "Grace",
            "updated_at": T0 + dt.timedelta(minutes=5),
        },
        {"_id": oid(4), "email": "gone@example.com", "deleted": True, "updated_at": T0},
        {
            "_id": oid(5),
            "email": "not-an-email",
            "updated_at": T0 + dt.timedelta(minutes=9),
        },
        {"_id": oid(6), "email": "later@example.com", "updated_at": None},
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_APP_MONGO", json.dumps({"conn_type": "mongo", "host": "mongo.invalid", "schema": mongo.database})
    )
    monkeypatch.setattr(MongoHook, "get_conn", lambda self: mongo.client)
    brevo = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    brevo["extra"] = json.dumps({"poll_interval": 0.01, "max_retries": 0})
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEFAULT", json.dumps(brevo))
    brevo_sandbox.create_attribute("CITY", "text")
    brevo_sandbox.create_attribute("TAGS", "text")
    brevo_sandbox.create_attribute("INTERESTS", "multiple-choice", options=["VIP", "Beta", "Newsletter"])
    definition = load_definition(EXAMPLES / "definitions" / "app_users_mongo.yaml")
    definition = definition.model_copy(update={"integration": f"app{uuid.uuid4().hex[:8]}"})
    staging = f"file://{tmp_path}/staging"
    return lambda: run_dag(build_dag(definition, staging=staging, default_args={"retries": 0}))


def test_example_definition_syncs_into_the_sandbox(
    mongo: Mongo, tmp_path: Path, brevo_sandbox: Any, airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servers.airflow_db import task_states, xcom_value

    first = example_dag(mongo, tmp_path, brevo_sandbox, monkeypatch)()

    assert set(task_states(first).values()) == {"success"}
    summary = xcom_value(first, "load")
    assert (summary["rows read"], summary["rejected"], summary["created"]) == (4, 1, 3)  # not-an-email is rejected
    assert summary["cursor"]["key"] == str(oid(5))
    assert xcom_value(first, "extract")["skipped"] == {"updated_at is null": 1}
    contacts = {c.get("email"): c["attributes"] for c in brevo_sandbox.contacts()}
    assert set(contacts) == {"ada@example.com", "alan@example.org", "grace@example.com"}
    ada = contacts["ada@example.com"]
    assert ada["EXT_ID"] == str(oid(1)) and ada["CITY"] == "Paris" and ada["TAGS"] == "vip, beta"
    assert ada["SMS"] == "33612345678" and ada["LASTNAME"] == "Lovelace"
    assert ada["INTERESTS"] == ["VIP", "Beta"]  # the array, each item matched to an option
    assert "CITY" not in contacts["alan@example.org"]  # address without a city: null, left unset


def test_a_second_run_with_a_rejected_row_at_the_cursor_s_boundary_succeeds_and_sends_nothing(
    mongo: Mongo, tmp_path: Path, brevo_sandbox: Any, airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servers.airflow_db import task_states, xcom_value

    run = example_dag(mongo, tmp_path, brevo_sandbox, monkeypatch)
    first = run()
    assert xcom_value(first, "load")["cursor"]["key"] == str(oid(5))  # the cursor's row: not-an-email, rejected
    writes = [r for r in brevo_sandbox.requests() if r["method"] != "GET"]

    second = run()

    assert set(task_states(second).values()) == {"success"}
    summary = xcom_value(second, "load")
    # the boundary is read again, and its unchanged (rejected) row is left out, not rejected twice
    assert (summary["rows read"], summary["rejected"]) == (0, 0)
    assert xcom_value(second, "extract")["skipped"][SKIP_UNCHANGED] == 1
    assert [r for r in brevo_sandbox.requests() if r["method"] != "GET"] == writes


def test_a_cursor_inside_a_subdocument_reads_in_order_and_resumes_at_its_boundary(mongo: Mongo) -> None:
    mongo.insert(
        {"_id": 1, "email": "a@x.io", "meta": {"updated": T0}},
        {"_id": 2, "email": "b@x.io", "meta": {"updated": T0}},
        {"_id": 3, "email": "c@x.io", "meta": {"updated": T0 - dt.timedelta(hours=1)}},
        {"_id": 4, "email": "d@x.io", "meta": {}},
    )
    source = mongo.source(fields=["_id", "email", "meta.updated"], updated_field="meta.updated", key="_id")

    rows = read_all(source)
    assert [r["_id"] for r in rows] == [3, 1, 2]
    assert source.skipped == {"meta.updated is null": 1}
    resumed = read_all(source, ReadWindow(since=Cursor(T0, 1)))
    assert [r["_id"] for r in resumed] == [1, 2]
