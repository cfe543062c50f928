"""The error report: one CSV line per rejected value (row key, field, value, reason).

Rejected values are customer data, so the file is created readable by its owner only.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from airflow_provider_contactsync.core.errors import Reject

HEADER = ("row", "field", "value", "reason")


def write_error_report(rejects: Iterable[Reject], path: str | Path) -> int:
    """Write the rejects to ``path`` (mode 0600); return how many lines were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    count = 0
    with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        for reject in rejects:
            writer.writerow((reject.row, reject.field or "", reject.value or "", reject.reason))
            count += 1
    return count
