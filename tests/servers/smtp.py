"""pytest fixtures for a real smtp server on 127.0.0.1 (filled in by the smtp work)."""
