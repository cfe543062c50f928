#!/usr/bin/env bash
# Create .venv with contactsync, Airflow 3.3 and everything the demo and the tests need.
# Safe to run again: it only installs what is missing. Works on a machine with only python3
# (and installs python3 itself through apt-get when even that is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  echo "setup: installing python3 with apt-get" >&2
  apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
  PYTHON=python3
fi
if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || "$PYTHON" -m pip install --quiet --disable-pip-version-check --break-system-packages uv
fi
UV=("$PYTHON" -m uv)
"${UV[@]}" venv --quiet --allow-existing --python "$PYTHON" .venv
# Airflow is pinned to the release contactsync is tested on; users may run any Airflow >= 3.1.
"${UV[@]}" pip install --quiet --python .venv/bin/python -e ".[test]" "apache-airflow==3.3.2"
