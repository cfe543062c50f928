#!/usr/bin/env bash
# Create .venv with contactsync and Airflow 3.3. Which extras:
#   scripts/setup.sh         the demo and the README's Airflow UI section: every source's provider (.[all])
#   scripts/setup.sh test    the test suite: adds the test tools and emulators (.[test]; scripts/test.sh)
#   scripts/setup.sh bench   the benchmarks: adds dag-factory, the comparison of bench_dag_parse.py (.[test,bench])
# dag-factory registers an Airflow plugin (and fills `airflow standalone` with deprecation warnings),
# so it is only in .venv after `setup.sh bench`, until the next plain or test setup removes it.
# Safe to run again: it only installs what is missing (seconds once set up). Works on a machine with
# only python3 (and installs python3 itself through apt-get when even that is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-demo}" in
  demo) extras=all ;;
  test) extras=test ;;
  bench) extras=test,bench ;;
  *) echo "usage: scripts/setup.sh [demo|test|bench]" >&2; exit 2 ;;
esac
AIRFLOW_PIN="apache-airflow==3.3.2"

step() { echo "setup: $*" >&2; }

# Run "$@" in the background and print a line every 15 s until it ends, so that a quiet first
# install (a minute or two) never looks stuck; returns its exit status.
with_heartbeat() {
  local start=$SECONDS next=15 pid
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.2
    if ((SECONDS - start >= next)); then
      step "  still installing ($((SECONDS - start)) s) ..."
      next=$((next + 15))
    fi
  done
  wait "$pid"
}

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  step "installing python3 with apt-get"
  apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
  PYTHON=python3
fi
if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
  step "installing uv (the package installer) with pip"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || "$PYTHON" -m pip install --quiet --disable-pip-version-check --break-system-packages uv
fi
UV=("$PYTHON" -m uv)
[[ -x .venv/bin/python ]] || step "creating .venv"
"${UV[@]}" venv --quiet --allow-existing --python "$PYTHON" .venv
installed() { .venv/bin/python -c "import importlib.metadata as m, sys; m.distribution(sys.argv[1])" "$1" >/dev/null 2>&1; }
if installed apache-airflow; then
  step "checking .venv: contactsync[$extras] with $AIRFLOW_PIN ..."
else
  step "installing contactsync[$extras] with $AIRFLOW_PIN into .venv: a minute or two the first time ..."
fi
start=$SECONDS
# Airflow is pinned to the release contactsync is tested on; users may run any Airflow >= 3.1.
# --compile-bytecode: uv writes no .pyc by default, and PYTHONDONTWRITEBYTECODE=1 (common in images)
# stops Python writing them later, so every task process would compile Airflow again: 9-12 s of
# imports instead of 3-4 s (benchmarks/bench_task_startup.py). It also compiles what is already
# installed, skipping up-to-date files, so a second run costs seconds.
with_heartbeat "${UV[@]}" pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[$extras]" "$AIRFLOW_PIN"
# uv compiles only when it installs something: a .venv made before this line gets compiled once
# here, and again whenever site-packages changes (a package added or removed). The editable
# install's own sources are outside site-packages: compiled too (a stale .pyc is never used).
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
stamp=.venv/.contactsync-bytecode
installed_now=$(cd "$site" && ls -d ./*.dist-info | sha256sum | cut -c1-64)  # which packages, which versions
if [[ $(cat "$stamp" 2>/dev/null) != "$installed_now" ]]; then
  step "compiling .venv's bytecode (once per set of packages) ..."
  # some packages ship files for other Pythons (compileall then exits 1): those stay uncompiled
  with_heartbeat .venv/bin/python -m compileall -q -j 0 "$site" >/dev/null || true
  echo "$installed_now" >"$stamp"
fi
.venv/bin/python -m compileall -q -j 0 airflow_provider_contactsync dag_factory >/dev/null
if [[ $extras != *bench* ]] && installed dag-factory; then
  step "removing dag-factory (benchmarks only: an Airflow plugin; scripts/setup.sh bench puts it back)"
  "${UV[@]}" pip uninstall --quiet --python .venv/bin/python dag-factory
fi
step ".venv ready ($((SECONDS - start)) s)"
