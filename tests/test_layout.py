"""dag_factory/ and example_dags/ live at the repository's top level and inside the installed package.

From a checkout, ``airflow_provider_contactsync._layout`` finds them; the wheel maps them into the
package (pyproject's force-include), and a user's one-line DAG file works the same with either.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_checkout_imports_the_top_level_folders_as_parts_of_the_package() -> None:
    import airflow_provider_contactsync.dag_factory.builder as builder
    import airflow_provider_contactsync.example_dags as examples
    from airflow_provider_contactsync._layout import example_dags_dir

    assert Path(builder.__file__).resolve() == ROOT / "dag_factory" / "builder.py"
    assert Path(examples.__file__).resolve().parent == example_dags_dir() == ROOT / "example_dags"
    assert not (ROOT / "airflow_provider_contactsync" / "dag_factory").exists()


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    for python in ("python3", sys.executable):
        if subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    pytest.fail("uv is needed to build the wheel (scripts/setup.sh installs it)")


@pytest.mark.slow
def test_the_wheel_carries_them_inside_the_package_and_a_one_line_dag_file_builds_the_dags(tmp_path: Path) -> None:
    subprocess.run([*_uv(), "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)], check=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "airflow_provider_contactsync/dag_factory/builder.py" in names
    assert "airflow_provider_contactsync/example_dags/definitions/demo_customers.yaml" in names
    assert not [n for n in names if n.startswith(("dag_factory/", "example_dags/"))]
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    dags = tmp_path / "dags"
    (dags / "definitions").mkdir(parents=True)
    shutil.copy(installed / "airflow_provider_contactsync/example_dags/contactsync_dags.py", dags)
    demo = (installed / "airflow_provider_contactsync/example_dags/definitions/demo_customers.yaml").read_text()
    (dags / "definitions" / "demo.yaml").write_text(demo.replace("../data", str(installed / "data")))
    script = (
        "import json, runpy, airflow_provider_contactsync.dag_factory as f, airflow_provider_contactsync as p\n"
        f"found = runpy.run_path({str(dags / 'contactsync_dags.py')!r})\n"
        "from airflow_provider_contactsync.dag_factory import load_dags\n"
        f"print(json.dumps([p.__file__, f.__file__, sorted(load_dags({str(dags / 'definitions')!r}))]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}  # before the checkout's editable install
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    package, factory, dag_ids = json.loads(out.stdout.strip().splitlines()[-1])
    assert package.startswith(str(installed)) and factory.startswith(str(installed))
    assert dag_ids == ["contactsync__demo__customers"]
