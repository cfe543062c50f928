#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the end-to-end demo: the example CSV source synced into a
# local Brevo sandbox, then read back. No account, no server to install.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/contactsync demo "$@"
