"""What a new user meets in the first hour (issue 13): the README's commands, run as written.

- The README's Airflow UI section is extracted and run by bash in a copy of the repository's layout
  (on free ports, as the README says to do on another port): the example DAGs show in the API
  server, the demo DAG triggered there succeeds, the admin password is where the README says, and
  ``git status`` shows nothing of the state it left.
- ``scripts/demo.sh`` run twice in a row shows a sync both times, with no Airflow warning, and
  leaves nothing for git.
- The README's DAG files are the example DAG files; its install commands name a clone or a wheel;
  Airflow's Providers page gets a Documentation link; no package of the demo's or the tests' extras
  registers an Airflow plugin.

The bash commands start in their own process group, which is stopped by its id (the PID of the
bash the test started) at the end.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from polling import wait_for
from servers.processes import free_port, log_tail

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DIST = "airflow-provider-contactsync"
DEMO_DAG = "contactsync__demo__customers"
EXAMPLE_DEFINITIONS = ROOT / "example_dags" / "definitions"
EXAMPLE_DAGS = {
    (
        f"contactsync_export__{d['integration']}__{d['name']}"
        if d.get("kind") == "export"
        else f"contactsync__{d['integration']}__{d['source']['name']}"
    )
    for d in (yaml.safe_load(path.read_text(encoding="utf-8")) for path in EXAMPLE_DEFINITIONS.glob("*.yaml"))
}
VENV_BIN = Path(sys.executable).parent


def _section(heading: str) -> str:
    """The README's text under ``heading`` up to the next heading of the same or a higher level."""
    level = len(heading.split(" ", 1)[0])
    lines = README.splitlines(keepends=True)
    start = lines.index(heading + "\n")
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].lstrip().startswith("```")
        marks = len(lines[end]) - len(lines[end].lstrip("#"))
        if not fenced and 0 < marks <= level and lines[end][marks : marks + 1] == " ":
            return "".join(lines[start:end])
    return "".join(lines[start:])


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, re.M | re.S)


def _clean_env() -> dict[str, str]:
    """The environment without the Airflow settings tests/conftest.py gives this process."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}


def _git(folder: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True).stdout


def _checkout(folder: Path, files: dict[str, str]) -> Path:
    """A git repository holding the project's .gitignore and ``files``, all committed."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / ".gitignore", folder / ".gitignore")
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    _git(folder, "init", "-q")
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", "checkout")
    return folder


def _venv_links(folder: Path, *commands: str) -> None:
    """``.venv/bin/<command>`` in ``folder`` for the project's installed commands (no install here)."""
    (folder / ".venv" / "bin").mkdir(parents=True)
    for command in commands:
        (folder / ".venv" / "bin" / command).symlink_to(VENV_BIN / command)


def _stop_group(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process group this test started (its leader's PID), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            wait_for(lambda: not _group_alive(process.pid), timeout=timeout, interval=0.2)
            return
        except (subprocess.TimeoutExpired, AssertionError):
            continue


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the README's text ---------------------------------------------------------------------------


def test_status_line_says_every_built_source_is_built() -> None:
    status = README[README.index("Status:") :].split("\n\n", 1)[0]
    built, _, coming = status.partition("come next")
    for source in ("PostgreSQL", "MongoDB", "BigQuery", "Snowflake", "SFTP/FTP", "local folders"):
        assert source in built and source not in coming, source


def test_readme_dag_files_are_the_example_dag_files() -> None:
    """Each DAG file the README shows does what the example file it names does."""
    blocks = _code_blocks(_section("## Run it in your Airflow"), "python")
    assert len(blocks) == 2
    for block in blocks:
        code = "\n".join(line.strip() for line in block.splitlines())
        example = re.search(r"\(example_dags/(\w+\.py)\)", code.splitlines()[0]).group(1)
        example_code = (ROOT / "example_dags" / example).read_text()
        assert _statements(code) == _statements(example_code), example


def _statements(code: str) -> list[str]:
    """The module's statements, docstring and comments left out."""
    body = ast.parse(code).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return [ast.dump(statement) for statement in body]


def test_install_commands_name_a_clone_or_a_wheel_that_the_build_makes() -> None:
    install = _section("## Install into your Airflow")
    commands = [line for block in _code_blocks(install, "bash") for line in block.splitlines() if "pip install" in line]
    assert not [c for c in commands if f'"{DIST}[' in c or f" {DIST} " in c], "names a package that is not on PyPI"
    version = importlib.metadata.version(DIST)
    wheel = f"dist/airflow_provider_contactsync-{version}-py3-none-any.whl"  # hatchling's name for this version
    assert any(wheel in c for c in commands) and any("/path/to/contactsync[" in c for c in commands)
    assert "python -m build --wheel" in install


def test_skipped_test_variables_are_the_ones_the_tests_read() -> None:
    read = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        read |= set(re.findall(r"CONTACTSYNC_TEST_[A-Z_]+", path.read_text(encoding="utf-8")))
    read -= {"CONTACTSYNC_TEST_"}
    documented = set(re.findall(r"`(CONTACTSYNC_TEST_[A-Z_]+)`", _section("## The two commands")))
    assert read and documented == read


# --- packaging -----------------------------------------------------------------------------------


def test_providers_page_links_to_the_projects_documentation() -> None:
    """Airflow 3.3 takes the provider's link from the "Documentation" Project-URL of its metadata."""
    from airflow.providers_manager import ProvidersManager

    urls = dict(entry.split(", ", 1) for entry in importlib.metadata.metadata(DIST).get_all("Project-URL") or [])
    assert urls.get("Documentation", "").startswith("https://")
    assert "airflow.apache.org" not in urls["Documentation"]
    assert ProvidersManager().providers[DIST].data["documentation-url"] == urls["Documentation"]


def test_no_package_of_the_demo_or_test_extras_is_an_airflow_plugin() -> None:
    """dag-factory (benchmarks only) made `airflow standalone` load its plugin and print its warnings."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    plugins = {
        canonicalize_name(ep.dist.name) for ep in importlib.metadata.entry_points(group="airflow.plugins") if ep.dist
    }
    seen: set[str] = set()
    todo = [(DIST, frozenset({"all", "test"}))]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # a marker-excluded or optional requirement that is not installed
        for text in requires:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                todo.append((requirement.name, frozenset(requirement.extras)))
    assert canonicalize_name("dag-factory") not in seen
    assert not (plugins & seen) - {canonicalize_name(DIST)}


# --- scripts/demo.sh -----------------------------------------------------------------------------

DEMO_SH = (ROOT / "scripts" / "demo.sh").read_text()
NO_SETUP = "#!/usr/bin/env bash\n# The test's stand-in: .venv is the one running the tests.\nexit 0\n"


def test_demo_sh_starts_fresh_unless_told_to_keep(tmp_path: Path) -> None:
    echo = '#!/usr/bin/env bash\necho "$@"\n'
    repo = _checkout(
        tmp_path / "repo",
        {"scripts/demo.sh": DEMO_SH, "scripts/setup.sh": NO_SETUP, ".venv/bin/contactsync": echo},
    )

    def args(*given: str) -> str:
        return subprocess.run(
            ["bash", "scripts/demo.sh", *given], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert args() == "demo --fresh"
    assert args("--workdir", "x y") == "demo --fresh --workdir x y"
    assert args("--keep") == "demo"
    assert args("--workdir", "w", "--keep") == "demo --workdir w"


@pytest.mark.slow
def test_demo_sh_twice_in_a_row_shows_a_sync_both_times(tmp_path: Path) -> None:
    repo = _checkout(tmp_path / "repo", {"scripts/demo.sh": DEMO_SH, "scripts/setup.sh": NO_SETUP})
    _venv_links(repo, "contactsync")
    for attempt in (1, 2):
        result = subprocess.run(
            ["bash", "scripts/demo.sh"], cwd=repo, env=_clean_env(), capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        first_run = result.stdout.split("== second run")[0]
        assert "created              7" in first_run, (attempt, result.stdout)
        assert "write calls to Brevo  1" in first_run
        printed = result.stdout + result.stderr
        assert not re.search(r"warning|deprecat", printed, re.I), (attempt, printed)
    assert (repo / ".contactsync-demo" / "airflow-home").is_dir()
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_gitignore_covers_what_the_readme_steps_build(tmp_path: Path) -> None:
    repo = _checkout(tmp_path / "repo", {})
    made = [
        "dist/airflow_provider_contactsync-0.1.0-py3-none-any.whl",
        "build/lib/airflow_provider_contactsync/__init__.py",
        "airflow_provider_contactsync.egg-info/PKG-INFO",
        ".venv/bin/python",
        ".airflow-standalone/airflow.cfg",
        ".contactsync-demo/sandbox-api-key",
        "sandbox.db",
        "sandbox.db-wal",
    ]
    for name in made:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x")
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""


# --- the README's Airflow UI section, run as written ---------------------------------------------


def _ui_block() -> str:
    blocks = _code_blocks(_section("### See the example DAGs in the Airflow UI"), "bash")
    (block,) = [b for b in blocks if "airflow standalone" in b]
    return block


def test_ui_section_creates_what_it_needs_before_using_it() -> None:
    lines = _ui_block().splitlines()
    assert lines[0] == "./scripts/setup.sh"

    def first(pattern: str) -> int:
        return next(i for i, line in enumerate(lines) if re.search(pattern, line))

    assert first(r"^export AIRFLOW_HOME=") < first(r"mkdir -p \"\$AIRFLOW_HOME\"") < first(r"sandbox-seed\.json\"$")
    assert first(r"sandbox-seed\.json\"$") < first(r"contactsync-sandbox ") < first(r"airflow standalone")
    section = _section("### See the example DAGs in the Airflow UI")
    assert "simple_auth_manager_passwords.json.generated" in section and "AIRFLOW__API__BASE_URL" in section


@pytest.mark.slow
def test_ui_section_runs_as_written_and_shows_the_example_dags(tmp_path: Path) -> None:
    """The block, in a copy of the repository's layout: the sandbox, then `airflow standalone`.

    Only the ports differ: the sandbox's 8787 is replaced in the text, and the API server gets
    another port the way the README says (AIRFLOW__API__PORT with AIRFLOW__API__BASE_URL). The
    block's first line, ./scripts/setup.sh, is a stand-in here: .venv is the one running the tests.
    """
    if not (VENV_BIN / "airflow").exists():
        pytest.skip(f"no airflow command next to {sys.executable}")
    example_dags = ROOT / "example_dags"
    files = {"scripts/setup.sh": NO_SETUP}
    for path in example_dags.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            files[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    repo = _checkout(tmp_path / "repo", files)
    _venv_links(repo, "contactsync-sandbox", "airflow")
    api_port, sandbox_port = free_port(), free_port()
    block = _ui_block().replace("8787", str(sandbox_port))
    env = _clean_env() | {
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        # Airflow's own log servers (8793, 8794 by default) are not in the README: another Airflow
        # on this machine may hold them.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    log_path = tmp_path / "readme-ui.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", "set -e\n" + block],
            cwd=repo,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped by its id below
        )
    api = f"http://127.0.0.1:{api_port}"
    try:

        def running(condition):  # noqa: ANN001, ANN202
            def check():  # noqa: ANN202
                assert process.poll() is None, f"the README's block ended:\n{log_tail(log_path, 60)}"
                return condition()

            return check

        password_file = repo / ".airflow-standalone" / "simple_auth_manager_passwords.json.generated"
        wait_for(running(password_file.exists), timeout=300, interval=1)
        password = json.loads(password_file.read_text())["admin"]
        wait_for(running(lambda: _answers(f"{api}/api/v2/monitor/health")), timeout=300, interval=1)
        token = httpx.post(f"{api}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        assert token.status_code in (200, 201), token.text
        client = httpx.Client(
            base_url=f"{api}/api/v2", headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=30
        )

        def dag_ids() -> set[str]:
            return {d["dag_id"] for d in client.get("/dags", params={"limit": 100}).json()["dags"]}

        wait_for(running(lambda: EXAMPLE_DAGS <= dag_ids()), timeout=300, interval=2)
        assert client.get("/importErrors").json()["total_entries"] == 0

        providers = client.get("/providers", params={"limit": 100}).json()["providers"]
        (ours,) = [p for p in providers if p["package_name"] == DIST]
        assert ours["documentation_url"] and "airflow.apache.org" not in ours["documentation_url"]

        # The trigger the README asks for, with "Unpause on trigger": the scheduler also starts the
        # daily run that unpausing makes due. Whichever runs first syncs the CSV, the other finds
        # no new file. Both succeed (attributes seeded first, tasks reaching the execution API at
        # the README's base URL) and the sandbox holds the demo's 7 contacts.
        assert client.patch(f"/dags/{DEMO_DAG}", json={"is_paused": False}).status_code == 200
        run = client.post(f"/dags/{DEMO_DAG}/dagRuns", json={"logical_date": None})
        assert run.status_code == 200, run.text

        def finished_runs() -> dict[str, str] | None:
            runs = {r["dag_run_id"]: r["state"] for r in client.get(f"/dags/{DEMO_DAG}/dagRuns").json()["dag_runs"]}
            return runs if all(state in ("success", "failed") for state in runs.values()) else None

        runs = wait_for(running(finished_runs), timeout=300, interval=2)
        assert set(runs.values()) == {"success"}, (runs, log_tail(log_path, 80))
        contacts = httpx.get(
            f"http://127.0.0.1:{sandbox_port}/v3/contacts", headers={"api-key": "demo-key"}, timeout=30
        ).json()
        assert contacts["count"] == 7, contacts
        standalone_output = log_path.read_text(errors="replace")
        assert "Password for user 'admin'" in standalone_output
        assert "dagfactory" not in standalone_output.lower()
    finally:
        _stop_group(process)
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
