#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the end-to-end demo: the example CSV source synced into a
# local Brevo sandbox, then read back. No account, no server to install.
# Every run starts from a fresh state (.contactsync-demo/), so it always shows the sync;
# `--keep` continues from the previous run's state instead. Other arguments go to `contactsync demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
fresh=(--fresh)
args=()
for arg in "$@"; do
  case $arg in
    --keep) fresh=() ;;
    *) args+=("$arg") ;;
  esac
done
bash scripts/setup.sh
echo "demo: running the example DAG twice with Airflow's dag.test() (about half a minute) ..." >&2
exec .venv/bin/contactsync demo "${fresh[@]}" "${args[@]}"
