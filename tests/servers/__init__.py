"""Real servers (PostgreSQL, SMTP, ...) started and stopped by the tests on 127.0.0.1."""
