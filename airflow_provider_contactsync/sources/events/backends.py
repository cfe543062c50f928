"""One place that turns a queue's kind and connection into an :class:`EventQueue` (intake and runs share it)."""

from __future__ import annotations

from airflow_provider_contactsync.sources.events.queue import EventQueue

KINDS = ("redis", "postgres")
DEFAULT_TABLE_PREFIX = "contactsync_events"


def open_event_queue(kind: str, conn_id: str, *, integration: str, source: str, table: str | None = None) -> EventQueue:
    """The queue of one source.

    :param kind: ``redis`` (a stream per source, :mod:`.redis_queue`) or ``postgres`` (a table,
        :mod:`.postgres_queue`).
    :param conn_id: the Airflow connection of the Redis server or the PostgreSQL database.
    :param integration: the integration's name (Redis: part of the keys).
    :param source: the source's name (Redis: part of the keys).
    :param table: PostgreSQL only: the events table (``name`` or ``schema.name``); default
        ``contactsync_events__<integration>__<source>`` (when that is a valid identifier). One table
        per source: sources given the same table share their events.
    """
    if kind == "redis":
        if table is not None:
            raise ValueError("events queue 'redis': `table` is for the postgres queue only")
        from airflow_provider_contactsync.sources.events.redis_queue import RedisStreamQueue

        return RedisStreamQueue(conn_id, integration=integration, source=source)
    if kind == "postgres":
        from airflow_provider_contactsync.sources.events.postgres_queue import PostgresEventQueue, quote_table

        if table is None:
            table = f"{DEFAULT_TABLE_PREFIX}__{integration}__{source}"
            try:
                quote_table(table)
            except ValueError:
                raise ValueError(
                    f"events queue 'postgres' for {integration}/{source}: the default table {table!r} is not "
                    "a valid identifier; name one with `table`"
                ) from None
        return PostgresEventQueue(conn_id, table=table)
    raise ValueError(f"events queue kind {kind!r}: expected one of {', '.join(KINDS)}")
