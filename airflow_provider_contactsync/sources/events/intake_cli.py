"""``contactsync-webhooks``: the webhook intake as a server of its own, for Airflow kept off the internet.

Serves ``POST /webhooks/<integration>/<source>`` (and ``GET /healthz``) with uvicorn. Endpoints,
secrets and queues come from Airflow connections through Airflow's normal lookup (``AIRFLOW_CONN_*``
variables, a secrets backend, or the metadata DB when this machine reaches it); see :mod:`.intake`.
Put it behind a TLS-terminating proxy; it listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from starlette.applications import Starlette

from airflow_provider_contactsync.sources.events.intake import DEFAULT_MAX_BODY_BYTES
from airflow_provider_contactsync.sources.events.signatures import DEFAULT_REPLAY_WINDOW_SECONDS

PREFIX = "/webhooks"


def create_app(
    *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, replay_window_seconds: float = DEFAULT_REPLAY_WINDOW_SECONDS
) -> Starlette:
    """The standalone app: the intake at ``/webhooks`` and a health check at ``/healthz``."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from airflow_provider_contactsync.sources.events import intake

    async def healthz(_request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = intake.create_app(max_body_bytes=max_body_bytes, replay_window_seconds=replay_window_seconds)
    return Starlette(routes=[Route("/healthz", healthz), Mount(PREFIX, inner)])


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: must be > 0")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="contactsync-webhooks",
        description="Receive signed shop webhooks (POST /webhooks/<integration>/<source>) into the events queues.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (default: 8090)")
    parser.add_argument(
        "--max-body-bytes",
        type=_positive(int),
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"refuse larger bodies with 413 (default: {DEFAULT_MAX_BODY_BYTES})",
    )
    parser.add_argument(
        "--replay-window",
        type=_positive(float),
        default=DEFAULT_REPLAY_WINDOW_SECONDS,
        metavar="SECONDS",
        help=f"custom shape: refuse timestamps further than this from now (default: {DEFAULT_REPLAY_WINDOW_SECONDS})",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)

    import uvicorn

    app = create_app(max_body_bytes=args.max_body_bytes, replay_window_seconds=args.replay_window)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, proxy_headers=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
