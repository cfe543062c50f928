#!/usr/bin/env bash
# Set up (scripts/setup.sh test: the package with the test tools) and run the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-servers.sh
bash scripts/setup.sh test
exec .venv/bin/python -m pytest -n auto "$@"
