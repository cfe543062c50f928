"""The events queue backends (issue 14): Redis Streams and a PostgreSQL table, through the same tests.

Both run against real servers on 127.0.0.1 (``servers.redis``, ``servers.postgres``). A consumer that
"dies" is one that claims and never acks; staleness is given as 0 seconds, never waited for.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from servers.redis import MISSING, RedisServer, find_redis_server

from airflow_provider_contactsync.sources.events.backends import open_event_queue
from airflow_provider_contactsync.sources.events.postgres_queue import PostgresEventQueue, quote_table
from airflow_provider_contactsync.sources.events.queue import EventQueue, QueuedEvent
from airflow_provider_contactsync.sources.events.redis_queue import GROUP, RedisStreamQueue

NEVER_STALE = 3600.0
RECEIVED = dt.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)


def event(n: int, *, body: bytes | None = None) -> QueuedEvent:
    return QueuedEvent(
        delivery_id=f"delivery-{n}",
        platform="shopify",
        topic="customers/update" if n % 2 else None,
        body=body if body is not None else b'{"id": %d, "email": "c%d@example.com"}' % (n, n),
        received_at=RECEIVED + dt.timedelta(seconds=n),
        headers={"X-Shopify-Webhook-Id": f"delivery-{n}"},
    )


@pytest.fixture(params=["redis", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def conn_id(kind: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("redis_conn_id" if kind == "redis" else "postgres_db"))


@pytest.fixture
def open_queue(kind: str, conn_id: str) -> Iterator:
    """Opens queues of one source (each its own client/connection, like separate workers); closes them."""
    opened: list = []

    def make() -> EventQueue:
        queue = open_event_queue(kind, conn_id, integration="shop", source="customers")
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


@pytest.fixture
def queue(open_queue) -> EventQueue:
    return open_queue()


def delivery_ids(events: list[QueuedEvent]) -> list[str]:
    return [e.delivery_id for e in events]


def test_a_delivery_is_stored_once_and_read_back_as_put(queue: EventQueue) -> None:
    assert queue.put(event(1)) is True
    assert queue.put(event(1, body=b'{"redelivered": true}')) is False
    assert queue.put(event(2)) is True
    assert queue.depth() == 2

    claimed = queue.claim("worker-a", max_events=10, stale_after_seconds=NEVER_STALE)
    assert delivery_ids(claimed) == ["delivery-1", "delivery-2"]
    for got, want in zip(claimed, [event(1), event(2)], strict=True):
        assert (got.platform, got.topic, got.body, got.headers) == (want.platform, want.topic, want.body, want.headers)
        assert got.received_at == want.received_at
        assert got.entry_id and got.attempts == 0
    assert queue.put(event(1)) is False  # still refused while pending, and after the ack
    queue.ack([e.entry_id for e in claimed])
    assert queue.put(event(2)) is False
    assert queue.depth() == 0


def test_claim_hands_out_each_event_once_and_ack_finishes_it(queue: EventQueue) -> None:
    for n in range(1, 4):
        queue.put(event(n))

    first = queue.claim("worker-a", max_events=2, stale_after_seconds=NEVER_STALE)
    assert delivery_ids(first) == ["delivery-1", "delivery-2"]
    rest = queue.claim("worker-b", max_events=10, stale_after_seconds=NEVER_STALE)
    assert delivery_ids(rest) == ["delivery-3"]
    assert queue.claim("worker-b", max_events=10, stale_after_seconds=NEVER_STALE) == []
    assert queue.depth() == 3  # claimed, not acked: still waiting

    queue.ack([e.entry_id for e in first])
    assert queue.depth() == 1
    queue.ack([])  # nothing to do
    # Acked events never come back, even to a claim that takes every pending event as stale.
    again = queue.claim("worker-c", max_events=10, stale_after_seconds=0)
    assert delivery_ids(again) == ["delivery-3"]
    assert again[0].attempts == 1
    queue.ack([again[0].entry_id])
    assert queue.depth() == 0
    assert queue.claim("worker-c", max_events=10, stale_after_seconds=0) == []


def test_events_of_a_consumer_that_died_go_to_the_next_once_stale(queue: EventQueue) -> None:
    for n in range(1, 5):
        queue.put(event(n))
    dead = queue.claim("worker-dies", max_events=2, stale_after_seconds=NEVER_STALE)
    assert delivery_ids(dead) == ["delivery-1", "delivery-2"]  # ... and it never acks

    # Not stale yet: the next consumer gets only the events nobody claimed.
    fresh = queue.claim("worker-next", max_events=10, stale_after_seconds=NEVER_STALE)
    assert delivery_ids(fresh) == ["delivery-3", "delivery-4"]
    queue.ack([e.entry_id for e in fresh])

    # Stale (0 s: any claim is older than that): the dead consumer's events, with their attempt count.
    recovered = queue.claim("worker-next", max_events=10, stale_after_seconds=0)
    assert delivery_ids(recovered) == ["delivery-1", "delivery-2"]
    assert [e.attempts for e in recovered] == [1, 1]
    assert [e.entry_id for e in recovered] == [e.entry_id for e in dead]
    assert recovered[0].body == event(1).body

    # Claimed again and again: the counter keeps counting (what backoff and dead letters go by).
    assert [e.attempts for e in queue.claim("worker-3", max_events=1, stale_after_seconds=0)] == [2]
    queue.ack([e.entry_id for e in recovered])
    assert queue.depth() == 0


def test_stale_claims_come_before_new_events(queue: EventQueue) -> None:
    queue.put(event(1))
    queue.claim("worker-dies", max_events=1, stale_after_seconds=NEVER_STALE)
    queue.put(event(2))
    got = queue.claim("worker-next", max_events=1, stale_after_seconds=0)
    assert delivery_ids(got) == ["delivery-1"]
    assert queue.depth() == 2


def test_dead_letters_keep_the_event_and_its_reason(queue: EventQueue) -> None:
    for n in range(1, 4):
        queue.put(event(n))
    claimed = queue.claim("worker-a", max_events=3, stale_after_seconds=NEVER_STALE)
    queue.dead_letter(claimed[0], "Brevo answered 500 five times")
    queue.ack([claimed[1].entry_id])
    queue.dead_letter(claimed[2], "invalid email: 'not-an-address'")

    assert queue.depth() == 0
    assert queue.claim("worker-b", max_events=10, stale_after_seconds=0) == []  # dead letters are not retried
    letters = queue.dead_letters()
    assert [(e.delivery_id, reason) for e, reason in letters] == [
        ("delivery-3", "invalid email: 'not-an-address'"),
        ("delivery-1", "Brevo answered 500 five times"),
    ]
    dead, _ = letters[1]
    assert (dead.body, dead.platform, dead.topic, dead.headers) == (
        event(1).body,
        "shopify",
        event(1).topic,
        event(1).headers,
    )
    assert dead.received_at == event(1).received_at
    assert dead.entry_id == claimed[0].entry_id
    assert [e.delivery_id for e, _ in queue.dead_letters(limit=1)] == ["delivery-3"]
    assert queue.put(event(1)) is False  # a dead-lettered delivery is not taken in again


def test_dead_letter_records_the_attempts(queue: EventQueue) -> None:
    queue.put(event(1))
    queue.claim("worker-a", max_events=1, stale_after_seconds=NEVER_STALE)
    retried = queue.claim("worker-b", max_events=1, stale_after_seconds=0)
    queue.dead_letter(retried[0], "still failing")
    [(dead, reason)] = queue.dead_letters()
    assert (dead.attempts, reason) == (1, "still failing")


def test_depth_counts_waiting_and_claimed_events(queue: EventQueue) -> None:
    assert queue.depth() == 0
    for n in range(1, 6):
        queue.put(event(n))
    assert queue.depth() == 5
    claimed = queue.claim("worker-a", max_events=2, stale_after_seconds=NEVER_STALE)
    assert queue.depth() == 5
    queue.ack([claimed[0].entry_id])
    assert queue.depth() == 4
    queue.dead_letter(claimed[1], "gave up")
    assert queue.depth() == 3
    queue.ack([e.entry_id for e in queue.claim("worker-a", max_events=10, stale_after_seconds=NEVER_STALE)])
    assert queue.depth() == 0
    queue.put(event(6))
    assert queue.depth() == 1


def test_two_consumers_in_parallel_share_the_events_without_overlap_or_loss(open_queue) -> None:
    total = 300
    producers = [open_queue(), open_queue()]
    start = threading.Barrier(2)
    stored: list[list[bool]] = [[], []]

    def produce(i: int) -> None:
        start.wait()
        # Both producers put every delivery (a webhook retried to two intake processes): stored once.
        stored[i] = [producers[i].put(event(n)) for n in range(total)]

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(stored[0]) + sum(stored[1]) == total

    consumers = [open_queue(), open_queue()]
    got: list[list[str]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def consume(i: int) -> None:
        try:
            start.wait()
            while batch := consumers[i].claim(f"worker-{i}", max_events=7, stale_after_seconds=NEVER_STALE):
                got[i] += delivery_ids(batch)
                consumers[i].ack([e.entry_id for e in batch])
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert not set(got[0]) & set(got[1]), "an event was given to both consumers"
    assert sorted(got[0] + got[1]) == sorted(f"delivery-{n}" for n in range(total))
    assert len(got[0]) + len(got[1]) == total  # and none twice to the same one
    assert got[0] and got[1], "both consumers should have claimed some events"
    assert consumers[0].depth() == 0


# --- backend specifics ------------------------------------------------------------------------------


def test_redis_keys_ttl_and_stream_trimming(redis_conn_id: str, redis_server: RedisServer) -> None:
    queue = open_event_queue("redis", redis_conn_id, integration="shop", source="customers")
    assert isinstance(queue, RedisStreamQueue)
    stream = "contactsync:events:{shop:customers}"
    queue.put(event(1))
    queue.put(event(2))
    with redis_server.client() as client:
        assert client.type(stream) == b"stream"
        assert client.get(f"{stream}:delivery:delivery-1") is not None
        ttl = client.ttl(f"{stream}:delivery:delivery-1")
        assert 6 * 24 * 3600 < ttl <= 7 * 24 * 3600
        assert [g["name"] for g in client.xinfo_groups(stream)] == [GROUP.encode()]
        claimed = queue.claim("worker-a", max_events=2, stale_after_seconds=NEVER_STALE)
        queue.ack([claimed[0].entry_id])
        queue.dead_letter(claimed[1], "gave up")
        assert client.xlen(stream) == 0  # acked entries are deleted; their markers stay
        assert client.exists(f"{stream}:delivery:delivery-1") == 1
        [(_, fields)] = client.xrange(f"{stream}:dead")
        assert fields[b"reason"] == b"gave up" and fields[b"delivery_id"] == b"delivery-2"
    queue.close()


def test_redis_depth_counts_events_put_before_the_group_existed(redis_conn_id: str, redis_server: RedisServer) -> None:
    queue = RedisStreamQueue(redis_conn_id, integration="shop", source="customers")
    queue.put(event(1))
    with redis_server.client() as client:
        client.xgroup_destroy(queue.stream, GROUP)  # as if the group were created by a later process
    queue._group_ready = False
    assert queue.depth() == 1
    assert delivery_ids(queue.claim("w", max_events=5, stale_after_seconds=NEVER_STALE)) == ["delivery-1"]
    queue.close()


def test_redis_depth_when_redis_cannot_tell_the_lag(redis_conn_id: str, redis_server: RedisServer) -> None:
    queue = RedisStreamQueue(redis_conn_id, integration="shop", source="customers")
    for n in range(1, 5):
        queue.put(event(n))
    queue.claim("w", max_events=1, stale_after_seconds=NEVER_STALE)
    with redis_server.client() as client:
        [(undelivered, _)] = client.xrange(queue.stream, count=1, min="(" + client.xrange(queue.stream)[0][0].decode())
        client.xdel(queue.stream, undelivered)  # an entry deleted ahead of the group: XINFO's lag is nil
        assert [g["lag"] for g in client.xinfo_groups(queue.stream)] == [None]
    assert queue.depth() == 3  # 1 pending + 2 not delivered
    queue.close()


def test_postgres_table_keeps_dead_letters_and_acked_rows(postgres_db: str, postgres_server) -> None:
    queue = open_event_queue("postgres", postgres_db, integration="shop", source="customers", table="shop_events")
    assert isinstance(queue, PostgresEventQueue)
    queue.put(event(1))
    queue.put(event(2))
    claimed = queue.claim("worker-a", max_events=2, stale_after_seconds=NEVER_STALE)
    queue.ack([claimed[0].entry_id])
    queue.dead_letter(claimed[1], "gave up")
    queue.close()
    dbname = postgres_db.removeprefix("pg_")
    with postgres_server.connect(dbname) as conn:
        rows = conn.execute(
            "SELECT delivery_id, claimed_by, attempts, acked_at IS NOT NULL, dead_reason FROM shop_events ORDER BY id"
        ).fetchall()
    assert rows == [("delivery-1", "worker-a", 1, True, None), ("delivery-2", "worker-a", 1, True, "gave up")]


def test_postgres_default_table_is_per_source(postgres_db: str, postgres_server) -> None:
    a = open_event_queue("postgres", postgres_db, integration="shop", source="customers")
    b = open_event_queue("postgres", postgres_db, integration="shop", source="leads")
    a.put(event(1))
    assert (a.depth(), b.depth()) == (1, 0)
    assert b.put(event(1)) is True  # another source's table: its own deliveries
    a.close()
    b.close()
    with postgres_server.connect(postgres_db.removeprefix("pg_")) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"contactsync_events__shop__customers", "contactsync_events__shop__leads"}


@pytest.mark.parametrize(
    "name", ['events"; DROP TABLE x; --', "1events", "a.b.c", "", "events table", "x" * 64, "public."]
)
def test_postgres_table_name_must_be_an_identifier(name: str) -> None:
    with pytest.raises(ValueError, match="events table"):
        PostgresEventQueue("unused", table=name)


def test_postgres_table_names_are_quoted() -> None:
    assert quote_table("events") == '"events"'
    assert quote_table("crm.Events_1") == '"crm"."Events_1"'


def test_factory_refuses_what_it_cannot_open() -> None:
    with pytest.raises(ValueError, match="expected one of redis, postgres"):
        open_event_queue("kafka", "c", integration="shop", source="customers")
    with pytest.raises(ValueError, match="postgres queue only"):
        open_event_queue("redis", "c", integration="shop", source="customers", table="t")
    with pytest.raises(ValueError, match="name one with `table`"):
        open_event_queue("postgres", "c", integration="shop", source="customer-events")
    with pytest.raises(ValueError, match="letters, digits"):
        open_event_queue("redis", "c", integration="shop", source="a}{b")


def test_a_missing_redis_server_says_how_to_install_it(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="scripts/install-servers.sh") as caught:
        find_redis_server(path=str(tmp_path))
    assert str(caught.value) == MISSING
