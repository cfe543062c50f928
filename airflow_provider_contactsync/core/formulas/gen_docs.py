"""Regenerate the function reference in docs/formulas.md: ``python -m ...formulas.gen_docs [PATH]``."""

from __future__ import annotations

import sys
from pathlib import Path

from .reference import update_document


def main(argv: list[str]) -> None:
    path = Path(argv[0] if argv else "docs/formulas.md")
    path.write_text(update_document(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
