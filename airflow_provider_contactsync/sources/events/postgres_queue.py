"""The events queue as a PostgreSQL table, through the official provider's ``PostgresHook``.

For users who already land webhooks in their database. One table per source (default
``contactsync_events``; a name given must be an identifier, optionally schema-qualified), created if
missing::

    id bigserial PRIMARY KEY          -- the entry id
    delivery_id text NOT NULL UNIQUE  -- the same delivery is stored once, forever (rows are kept)
    platform text NOT NULL, topic text, body bytea NOT NULL, headers jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    claimed_by text, claimed_at timestamptz, attempts integer NOT NULL DEFAULT 0,
    acked_at timestamptz,             -- done (loaded or dead-lettered): never claimed again
    dead_reason text                  -- set on dead letters (with acked_at)

Atomicity and durability are PostgreSQL's: ``put`` is one ``INSERT ... ON CONFLICT (delivery_id) DO
NOTHING`` committed before it returns; ``claim`` is one ``UPDATE ... WHERE id IN (SELECT ... FOR
UPDATE SKIP LOCKED)``, so two consumers claiming at once never get the same row and neither waits for
the other. Every value is a bound parameter; the table name is validated, then quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from airflow_provider_contactsync.sources.events.queue import QueuedEvent

DEFAULT_TABLE = "contactsync_events"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_COLUMNS = "id, delivery_id, platform, topic, body, headers, received_at, attempts"


def quote_table(name: str) -> str:
    """``name`` or ``schema.name`` as a quoted SQL identifier; ValueError for anything else."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ValueError(
            f"events table {name!r}: use a table name or schema.table of letters, digits and '_' "
            "(not starting with a digit, at most 63 characters each)"
        )
    return ".".join(f'"{part}"' for part in parts)


def _event(row: Sequence[Any], attempts: int) -> QueuedEvent:
    entry_id, delivery_id, platform, topic, body, headers, received_at, _ = row
    if isinstance(headers, str):  # a driver that does not parse jsonb
        headers = json.loads(headers)
    return QueuedEvent(
        delivery_id=delivery_id,
        platform=platform,
        topic=topic,
        body=bytes(body),
        received_at=received_at,
        entry_id=str(entry_id),
        attempts=attempts,
        headers=dict(headers or {}),
    )


class PostgresEventQueue:
    """One source's events in a PostgreSQL table (see the module's docstring).

    :param conn_id: the Airflow connection for ``PostgresHook``.
    :param table: the table (``name`` or ``schema.name``), created if missing.
    """

    def __init__(self, conn_id: str, *, table: str = DEFAULT_TABLE) -> None:
        self.conn_id = conn_id
        self.table = table
        self._table = quote_table(table)
        self._conn: Any = None
        self._ready = False

    # --- connection --------------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            self._conn = PostgresHook(postgres_conn_id=self.conn_id).get_conn()
            self._conn.autocommit = False
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor in one transaction: committed when the block ends, rolled back if it raises."""
        conn = self._connection()
        if not self._ready:
            self._create_table(conn)
            self._ready = True
        try:
            cursor = conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _create_table(self, conn: Any) -> None:
        """CREATE TABLE IF NOT EXISTS under an advisory lock (two first users at once would collide)."""
        index = self.table.replace(".", "_")
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"contactsync-events:{self.table}",))
                cursor.execute(
                    f"""CREATE TABLE IF NOT EXISTS {self._table} (
                        id bigserial PRIMARY KEY,
                        delivery_id text NOT NULL UNIQUE,
                        platform text NOT NULL,
                        topic text,
                        body bytea NOT NULL,
                        headers jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                        received_at timestamptz NOT NULL,
                        claimed_by text,
                        claimed_at timestamptz,
                        attempts integer NOT NULL DEFAULT 0,
                        acked_at timestamptz,
                        dead_reason text
                    )"""
                )
                # Partial indexes: what claim/depth scan (waiting rows) and what dead_letters lists.
                cursor.execute(
                    f'CREATE INDEX IF NOT EXISTS "{index[:50]}_waiting" ON {self._table} (id) WHERE acked_at IS NULL'
                )
                cursor.execute(
                    f'CREATE INDEX IF NOT EXISTS "{index[:50]}_dead" ON {self._table} (acked_at DESC, id DESC) '
                    "WHERE dead_reason IS NOT NULL"
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- the queue ---------------------------------------------------------------------------------

    def put(self, event: QueuedEvent) -> bool:
        with self._transaction() as cursor:
            cursor.execute(
                f"INSERT INTO {self._table} (delivery_id, platform, topic, body, headers, received_at) "
                "VALUES (%s, %s, %s, %s, %s::jsonb, %s) ON CONFLICT (delivery_id) DO NOTHING RETURNING id",
                (
                    event.delivery_id,
                    event.platform,
                    event.topic,
                    event.body,
                    json.dumps(event.headers, sort_keys=True),
                    event.received_at,
                ),
            )
            return cursor.fetchone() is not None

    def claim(self, consumer: str, *, max_events: int, stale_after_seconds: float) -> list[QueuedEvent]:
        """Stale claims first, then unclaimed rows, oldest first; ``attempts`` counts the claims before this one.

        Staleness is judged by the database's clock (``now()``, the transaction's start), never the caller's.
        """
        if max_events <= 0:
            return []
        with self._transaction() as cursor:
            cursor.execute(
                f"""UPDATE {self._table} SET claimed_by = %(consumer)s, claimed_at = now(), attempts = attempts + 1
                WHERE id IN (
                    SELECT id FROM {self._table}
                    WHERE acked_at IS NULL AND (
                        claimed_at IS NULL
                        OR claimed_at <= now() - make_interval(secs => %(stale)s)
                    )
                    ORDER BY claimed_at IS NULL, id
                    FOR UPDATE SKIP LOCKED
                    LIMIT %(limit)s
                )
                RETURNING {_COLUMNS}""",
                {"consumer": consumer, "stale": float(stale_after_seconds), "limit": int(max_events)},
            )
            rows = cursor.fetchall()
        # RETURNING has no order: stale claims (attempts > 1) first, then by id, as the SELECT chose them.
        rows.sort(key=lambda row: (row[7] <= 1, row[0]))
        return [_event(row, row[7] - 1) for row in rows]

    def ack(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        with self._transaction() as cursor:
            cursor.execute(
                f"UPDATE {self._table} SET acked_at = now() WHERE id = ANY(%s) AND acked_at IS NULL",
                ([int(entry_id) for entry_id in entry_ids],),
            )

    def dead_letter(self, event: QueuedEvent, reason: str) -> None:
        """The row stays, with ``dead_reason`` and ``acked_at`` set (one UPDATE)."""
        if not event.entry_id:
            raise ValueError(f"dead_letter needs a claimed event (delivery {event.delivery_id!r} has no entry id)")
        with self._transaction() as cursor:
            cursor.execute(
                f"UPDATE {self._table} SET dead_reason = %s, acked_at = coalesce(acked_at, now()) WHERE id = %s",
                (reason, int(event.entry_id)),
            )

    def dead_letters(self, *, limit: int = 100) -> list[tuple[QueuedEvent, str]]:
        """The latest first, each event as it was when dead-lettered (``attempts``: claims before the last)."""
        with self._transaction() as cursor:
            cursor.execute(
                f"SELECT {_COLUMNS}, dead_reason FROM {self._table} WHERE dead_reason IS NOT NULL "
                "ORDER BY acked_at DESC, id DESC LIMIT %s",
                (int(limit),),
            )
            rows = cursor.fetchall()
        return [(_event(row[:8], max(0, row[7] - 1)), row[8]) for row in rows]

    def depth(self) -> int:
        with self._transaction() as cursor:
            cursor.execute(f"SELECT count(*) FROM {self._table} WHERE acked_at IS NULL")
            return int(cursor.fetchone()[0])
