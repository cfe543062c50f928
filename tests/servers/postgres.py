"""pytest fixtures for a real postgres server on 127.0.0.1 (filled in by the postgres work)."""
