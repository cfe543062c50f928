"""Run one contactsync task in its own process, as an Airflow worker would, so a test can SIGKILL it.

``python -m servers.stage_process --stage load --state DIR`` runs one operator's ``execute()`` with
a stand-in context kept in files under ``DIR``: upstream results (XCom) in ``xcom.json``, the asset
state store in ``asset_state.json``, the definition in ``definition.json``. Running the same stage
again with the same ``DIR`` and run id is what Airflow's retry of that task does: same run, same
upstream results, same staged files. The parent starts it with :func:`start_stage`, and can kill it
with ``process.kill()`` at any moment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

STAGES = ("extract", "transform", "map", "load")
TESTS = Path(__file__).resolve().parents[1]


class FileXcomTI:
    """The task instance's XCom, in a dict the caller keeps in a file."""

    def __init__(self, xcoms: dict[str, Any]) -> None:
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get(task_ids if key == "return_value" else f"{task_ids}:{key}")

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[f"push:{key}"] = value


class FileAccessor:
    """One asset's state store entries, in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _data(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._data().get(key, default)

    def set(self, key: str, value: Any) -> None:
        data = self._data()
        data[key] = value
        self.path.write_text(json.dumps(data))

    def delete(self, key: str) -> None:
        data = self._data()
        data.pop(key, None)
        self.path.write_text(json.dumps(data))


class FileStateStore:
    """``context['asset_state_store']``: every asset's accessor is the one JSON file."""

    def __init__(self, path: Path) -> None:
        self.accessor = FileAccessor(path)

    def __getitem__(self, asset: Any) -> FileAccessor:
        return self.accessor


def run_stage(stage: str, state: Path, run_id: str) -> int:
    """Child process: one operator's execute(); its result recorded as the stage's XCom. Exit 0, or
    99 when the task skipped itself (AirflowSkipException)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_provider_contactsync import operators

    classes = {
        "extract": operators.ContactsyncExtractOperator,
        "transform": operators.ContactsyncTransformOperator,
        "map": operators.ContactsyncMapOperator,
        "load": operators.ContactsyncLoadOperator,
    }
    definition = json.loads((state / "definition.json").read_text())
    operator = classes[stage](task_id=stage, definition=definition, staging=f"file://{state}/staging")
    xcom_file = state / "xcom.json"
    xcoms = json.loads(xcom_file.read_text()) if xcom_file.exists() else {}
    context = {
        "ti": FileXcomTI(xcoms),
        "run_id": run_id,
        "params": {},
        "asset_state_store": FileStateStore(state / "asset_state.json"),
    }
    try:
        result = operator.execute(context)
    except AirflowSkipException:
        return 99
    xcoms[stage] = result
    xcom_file.write_text(json.dumps(xcoms, default=str))
    return 0


def start_stage(stage: str, state: Path, env: dict[str, str], *, run_id: str = "run-1") -> subprocess.Popen[bytes]:
    """Start one stage in a child process (its output in ``DIR/<stage>.log``)."""
    log = (state / f"{stage}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "servers.stage_process", "--stage", stage, "--state", str(state), "--run-id", run_id],
        cwd=TESTS,
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def write_definition(state: Path, definition: dict[str, Any]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "definition.json").write_text(json.dumps(definition))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--run-id", default="run-1")
    args = parser.parse_args()
    sys.exit(run_stage(args.stage, args.state, args.run_id))


if __name__ == "__main__":
    main()
