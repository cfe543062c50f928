"""Customer events (issue 14): webhooks from shops land in a durable queue; a run drains it into contacts.

- :mod:`.queue`: the queue interface every backend implements (Redis Streams, a PostgreSQL table).
- :mod:`.shapes`: what a platform's payload means (custom, Shopify, WooCommerce) as customer events.
- :mod:`.apply`: events per customer in event-time order into contacts and deletes (pure rules).
"""
