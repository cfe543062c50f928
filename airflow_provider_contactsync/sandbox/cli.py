"""``contactsync-sandbox``: run the Brevo sandbox from a shell, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .server import BrevoSandbox


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contactsync-sandbox", description="A local Brevo API v3 (contacts, processes) over SQLite."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    parser.add_argument("--db", required=True, help="SQLite file (state persists across restarts)")
    parser.add_argument("--api-key", required=True, help="the api-key header value to accept")
    parser.add_argument("--seed", help="JSON file: {attributes: [...], lists: [...]}, applied at start")
    parser.add_argument("--contacts-rps", type=int, help="/v3/contacts* requests per second (default 10)")
    parser.add_argument("--contacts-per-hour", type=int, help="/v3/contacts* requests per hour (default 36000)")
    parser.add_argument("--other-per-hour", type=int, help="other /v3 requests per hour (default 100)")
    parser.add_argument("--rate-429", type=float, help="fraction of requests answered 429 at random")
    parser.add_argument("--fault-5xx", type=float, help="fraction of requests answered 5xx at random")
    parser.add_argument("--fault-drop", type=float, help="fraction of connections dropped (before or after)")
    parser.add_argument("--slow-ms", type=int, help="delay every answer by this many milliseconds")
    parser.add_argument("--import-delay", type=float, help="seconds an import/export takes (default 2)")
    parser.add_argument(
        "--read-timeout", type=float, help="seconds a request may take to arrive once started, then 408 (default 60)"
    )
    parser.add_argument("--idle-timeout", type=float, help="seconds an idle keep-alive connection stays open (75)")
    parser.add_argument("--max-body-bytes", type=int, help="largest request body, larger is 413 (default 64 MiB)")
    parser.add_argument(
        "--max-batch-contacts", type=int, help="most contacts in one POST /contacts/batch, more is 400 (default 1000)"
    )
    parser.add_argument(
        "--doi-template-ids", help="comma-separated ids of the account's double opt-in templates (default 1-10)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "contacts_rps",
            "contacts_per_hour",
            "other_per_hour",
            "rate_429",
            "fault_5xx",
            "fault_drop",
            "slow_ms",
            "import_delay",
            "read_timeout",
            "idle_timeout",
            "max_body_bytes",
            "max_batch_contacts",
            "doi_template_ids",
        )
        if getattr(args, name) is not None
    }
    if args.seed:
        settings["seed"] = args.seed
    try:
        sandbox = BrevoSandbox(args.db, args.api_key, host=args.host, port=args.port, **settings)
        sandbox.start()
    except (OSError, ValueError) as exc:
        print(f"contactsync-sandbox: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"Brevo sandbox listening on {sandbox.url}", flush=True)
    while not stop.wait(0.5):
        pass
    sandbox.stop()
    print("Brevo sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
