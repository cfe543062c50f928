"""``contactsync-salesforce-sandbox``: run the Salesforce sandbox from a shell, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ApiError
from .server import DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN, DEFAULT_USERNAME, DEFAULT_VERSION, SalesforceSandbox


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contactsync-salesforce-sandbox",
        description="A local Salesforce org (Contact, Lead, Account) over SQLite, served over HTTPS.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788, help="0 picks a free port")
    parser.add_argument("--db", required=True, help="SQLite file (state persists across restarts)")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--security-token", default=DEFAULT_SECURITY_TOKEN)
    parser.add_argument("--version", default=DEFAULT_VERSION, help="API version of the printed connection")
    parser.add_argument("--tls-dir", help="where the sandbox CA is kept (default: <db>.tls next to the database)")
    parser.add_argument("--no-tls", action="store_true", help="plain HTTP (simple-salesforce needs HTTPS)")
    parser.add_argument("--seed", help='JSON file {"Contact": [records], "Lead": [...]} inserted at start')
    parser.add_argument("--page-size", type=int, help="records per REST query page (default 2000)")
    parser.add_argument("--daily-api-limit", type=int, help="REST calls per 24 h before REQUEST_LIMIT_EXCEEDED")
    parser.add_argument("--bulk-job-seconds", type=float, help="seconds a Bulk 2.0 query job takes (default 0)")
    parser.add_argument("--slow-ms", type=int, help="delay every answer by this many milliseconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("page_size", "daily_api_limit", "bulk_job_seconds", "slow_ms")
        if getattr(args, name) is not None
    }
    try:
        sandbox = SalesforceSandbox(
            args.db,
            host=args.host,
            port=args.port,
            username=args.username,
            password=args.password,
            security_token=args.security_token,
            version=args.version,
            tls=not args.no_tls,
            tls_dir=args.tls_dir or f"{args.db}.tls",
            **settings,
        )
        sandbox.start()
    except (OSError, ValueError) as exc:
        print(f"contactsync-salesforce-sandbox: {exc}", file=sys.stderr)
        return 2
    try:
        if args.seed:
            for name, rows in json.loads(Path(args.seed).read_text()).items():
                sandbox.seed(name, rows)
    except (OSError, ValueError, ApiError, AttributeError) as exc:
        print(f"contactsync-salesforce-sandbox: --seed {args.seed}: {exc}", file=sys.stderr)
        sandbox.stop()
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"Salesforce sandbox listening on {sandbox.base_url}", flush=True)
    if sandbox.ca_bundle:
        print(f"REQUESTS_CA_BUNDLE={sandbox.ca_bundle}", flush=True)
    print(f"AIRFLOW_CONN_SALESFORCE_DEFAULT='{sandbox.airflow_connection()}'", flush=True)
    while not stop.wait(0.5):
        pass
    sandbox.stop()
    print("Salesforce sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
