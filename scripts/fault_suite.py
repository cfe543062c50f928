"""Fault suite (issue 17): a PostgreSQL table synced into a Brevo sandbox that fails like a bad day at
Brevo, with tasks SIGKILLed at random moments and retried as Airflow would; then the sandbox must hold
exactly the source after the transform: no contact lost, none duplicated, none wrong.

    .venv/bin/python scripts/fault_suite.py                     # 100,000 rows, 20 kills, a random seed
    .venv/bin/python scripts/fault_suite.py --rows 10000 --seed 17

Phase 1, faults: the table is synced (extract >> transform >> map >> load, each task in its own
process), 10% of its rows are updated, and it is synced again, while the sandbox answers ~10% of
requests 5xx, ~5% 429 and drops ~2% of connections (before or after doing the work). The updates make
ties on the cursor column: a quarter of them take the stored cursor's own value, the rest share
timestamps fifty at a time; some change the contact's email (the load re-keys the contact), some fix
rows the transform rejected before.

Phase 2, faults and kills: a new DAG syncs the table into a new sandbox (same faults), then updates
and syncs it again (more runs when a kill missed its moment), while tasks are SIGKILLed ``--kills``
times, a quarter of them in each stage. A kill lands at a moment the seeded RNG draws among what a
task does: the k-th chunk file it writes (the file half-written), the n-th request it makes to Brevo
(Brevo did the work, the answer is not sent yet), the start, or the load's last step (its run
recorded as settled, not yet returned). Each kill is followed by what Airflow does: the same task,
same run, next try, in a new process. A kill takes the task and the worker processes it spawned.

After each phase the sandbox is compared with the expected contacts: the source rows as they are now,
through the definition's own transform and mapping (``ContactPipeline``, what ``contactsync preview``
runs). Lost: an expected contact missing; duplicated: a contact held more than once, or a contact
no source row explains; wrong: an email, attribute or list membership that differs.

Tasks are forked from a server that imported Airflow once (``servers.stage_process.StageServer``),
as Airflow's workers fork task processes. The figures come from the sandbox's request log (every
request, and the fault it injected). Exit status 1 when a contact is lost, duplicated or wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import secrets
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # servers.*: the tests' PostgreSQL and task-process helpers

STAGES = ("extract", "transform", "map", "load")
STAGE_FOLDERS = {"extract": "extract", "transform": "transform", "map": "contacts"}
"""Where each stage writes its chunk files in the run's staging folder."""
TASK_TIMEOUT = 600.0
"""Longest a task may take (a hung task fails the suite instead of hanging it); see also ``deadline``."""
MAX_EXTRA_RUNS = 3
"""Runs added to phase 2 when kills missed their moment (the task ended first)."""
INTEGRATION_ATTRIBUTES = (("FULLNAME", "text"), ("AGE", "float"), ("PREMIUM", "boolean"))
T0 = "2020-01-01 00:00:00+00"
RUN_COUNTS = ("rows read", "rejected", "created", "updated", "unchanged", "recovered", "retried", "refused")
"""The counts of a run summary shown for each run."""


@dataclass(frozen=True)
class SuiteConfig:
    """Sizes, fault rates and the seed of one suite run."""

    rows: int = 100_000
    seed: int = 0
    kills: int = 20
    update_share: float = 0.10
    fault_5xx: float = 0.10
    rate_429: float = 0.05
    fault_drop: float = 0.02
    chunk_size: int = 0
    """Rows per extract chunk; 0: a twentieth of ``rows`` (the first run of a phase writes 20 chunks)."""
    kill_runs: int = 3
    """DAG runs of phase 2 over which the kills are spread: a full read, then runs after updates."""
    deadline: float = 0.0
    """Seconds the whole suite may take (0: no limit): past it, the task running is killed and the suite
    raises ``TimeoutError``. A bound, not a measurement: nothing asserts how fast it went."""

    @property
    def chunk(self) -> int:
        return self.chunk_size or max(100, math.ceil(self.rows / 20))


# -- the source table ----------------------------------------------------------------------------

FIELDS = ["id", "email", "first_name", "last_name", "age", "plan", "updated_at"]


def definition_for(integration: str, list_id: int) -> dict[str, Any]:
    """The synced definition: four formulas, seven attributes, the row key as EXT_ID."""
    from airflow_provider_contactsync.core.spec import SourceDefinition

    return SourceDefinition.model_validate(
        {
            "integration": integration,
            "source": {
                "name": "customers",
                "type": "postgres",
                "conn_id": "fault_pg",
                "table": "public.customers",
                "fields": FIELDS,
                "updated_field": "updated_at",
                "key": "id",
            },
            "transform": {
                "email": "email.normalizeEmail()",
                "full_name": "(first_name + ' ' + last_name).trim()",
                "age": "age.asInt()",
                "premium": "plan == 'premium'",
            },
            "mapping": {
                "email": "EMAIL",
                "id": "EXT_ID",
                "first_name": "FIRSTNAME",
                "last_name": "LASTNAME",
                "full_name": "FULLNAME",
                "age": "AGE",
                "premium": "PREMIUM",
            },
            "destination": {"conn_id": "fault_brevo", "list_ids": [list_id]},
            "alerts": {"max_error_rate": 0.01},
        }
    ).model_dump(mode="json")


def fill(conn: Any, rows: int) -> None:
    """Customers with ties of ten rows on ``updated_at``; one row in a thousand has an age the transform
    rejects ("unknown")."""
    conn.execute(
        "CREATE TABLE public.customers (id bigint PRIMARY KEY, email text, first_name text, last_name text,"
        " age text, plan text, updated_at timestamptz NOT NULL)"
    )
    conn.execute(
        "INSERT INTO public.customers SELECT i, ' User' || i || '@Example.com ', 'First' || i, 'Last' || (i % 997),"
        " CASE WHEN i % 1000 = 7 THEN 'unknown' ELSE (18 + i % 70)::text END,"
        " CASE WHEN i % 5 = 0 THEN 'premium' ELSE 'basic' END,"
        f" '{T0}'::timestamptz + (i / 10) * interval '1 second' FROM generate_series(1, {rows}) AS i"
    )
    conn.execute("CREATE INDEX ON public.customers (updated_at, id)")
    conn.execute("VACUUM ANALYZE public.customers")


@dataclass
class Update:
    """What one round of updates did to the table."""

    rows: int
    at_cursor: int
    emails_changed: int
    fixed: int
    cursor_value: str


def update(conn: Any, rng: random.Random, rows: int, share: float, round_: int) -> Update:
    """Change ``share`` of the rows: a quarter stamped with the cursor's value (the table's latest
    ``updated_at``, which the last run stored), the others fifty to a timestamp after it."""
    (latest,) = conn.execute("SELECT max(updated_at) FROM public.customers").fetchone()
    keys = rng.sample(range(1, rows + 1), max(1, int(rows * share)))
    at_cursor = len(keys) // 4
    changes = []
    emails = 0
    for position, key in enumerate(keys):
        stamp_offset = 0 if position < at_cursor else 1 + (position - at_cursor) // 50
        email = None
        if rng.random() < 0.05:
            email = f"user{key}.r{round_}@example.com"
            emails += 1
        changes.append(
            (
                key,
                email,
                f"First{key}-r{round_}",
                str(18 + (key + round_) % 70),
                "premium" if key % 3 == round_ % 3 else "basic",
                stamp_offset,
            )
        )
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE changes (id bigint, email text, first_name text, age text, plan text, step int)"
            " ON COMMIT DROP"
        )
        with conn.cursor().copy("COPY changes FROM STDIN") as copy:
            for change in changes:
                copy.write_row(change)
        (fixed,) = conn.execute(
            "SELECT count(*) FROM public.customers c JOIN changes ch USING (id) WHERE c.age = 'unknown'"
        ).fetchone()
        conn.execute(
            "UPDATE public.customers c SET email = coalesce(ch.email, c.email), first_name = ch.first_name,"
            " age = ch.age, plan = ch.plan, updated_at = %s::timestamptz + ch.step * interval '1 second'"
            " FROM changes ch WHERE c.id = ch.id",
            (latest,),
        )
    return Update(len(keys), at_cursor, emails, fixed, latest.isoformat())


def rows_since(conn: Any, value: str | None) -> int:
    """Rows the next incremental read returns (database sources read the cursor's value again)."""
    if value is None:
        return conn.execute("SELECT count(*) FROM public.customers").fetchone()[0]
    return conn.execute("SELECT count(*) FROM public.customers WHERE updated_at >= %s", (value,)).fetchone()[0]


# -- expected and actual contacts --------------------------------------------------------------------


@dataclass
class Comparison:
    """The sandbox against the expected contacts."""

    expected: int
    rejected: int
    contacts: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    """One entry per extra contact: a second contact of a key, or a contact no source row explains."""
    wrong: list[str] = field(default_factory=list)


def expected_contacts(
    conn: Any, definition: dict[str, Any], attributes: list[dict[str, Any]]
) -> tuple[dict[str, Any], int]:
    """What Brevo should hold for each source row as it is now: its import item (``to_import_item`` of
    the contact ``ContactPipeline`` makes of it, the transform and mapping the tasks run), by row key;
    and how many rows the definition rejects."""
    from airflow_provider_contactsync.core.attributes import AttributeCatalog
    from airflow_provider_contactsync.core.mapping import to_import_item
    from airflow_provider_contactsync.core.pipeline import ContactPipeline
    from airflow_provider_contactsync.core.spec import SourceDefinition

    pipeline = ContactPipeline(SourceDefinition.model_validate(definition), AttributeCatalog.from_api(attributes))
    expected: dict[str, Any] = {}
    rejected = 0
    with conn.transaction(), conn.cursor(name="expected") as cursor:  # server-side: constant memory
        cursor.execute(f"SELECT {', '.join(FIELDS)} FROM public.customers ORDER BY id")
        rows = (dict(zip(FIELDS, row, strict=True)) for row in cursor)
        for outcome in pipeline.process(rows):
            if outcome.contact is None:
                rejected += 1
            else:
                expected[str(outcome.key)] = to_import_item(outcome.contact)
    return expected, rejected


def _same(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return float(expected) == float(actual)
    return str(expected) == str(actual)


def compare(
    expected: dict[str, Any], rejected: int, contacts: list[dict[str, Any]], list_id: int, attributes: list[str]
) -> Comparison:
    """Lost, duplicated and wrong contacts (see :class:`Comparison`); ``attributes``: the mapped ones."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    unexplained = []
    for contact in contacts:
        key = contact["attributes"].get("EXT_ID")
        if key is not None and str(key) in expected:
            by_key.setdefault(str(key), []).append(contact)
        else:
            unexplained.append(contact)
    result = Comparison(len(expected), rejected, len(contacts))
    for contact in unexplained:
        result.duplicated.append(
            f"contact {contact['id']} ({contact.get('email')}, EXT_ID "
            f"{contact['attributes'].get('EXT_ID')}): no source row has it"
        )
    for key, item in expected.items():
        found = by_key.get(key)
        if not found:
            result.lost.append(f"row {key} ({item.get('email')})")
            continue
        result.duplicated.extend(f"row {key}: contact {c['id']} ({c.get('email')}) again" for c in found[1:])
        contact = found[0]
        problems = []
        if contact.get("email") != item.get("email"):
            problems.append(f"email {contact.get('email')!r}, expected {item.get('email')!r}")
        for name in attributes:
            if name == "EMAIL":
                continue
            want, have = item["attributes"].get(name), contact["attributes"].get(name)
            if not _same(want, have):
                problems.append(f"{name} {have!r}, expected {want!r}")
        if list_id not in (contact.get("listIds") or []):
            problems.append(f"not in list {list_id}")
        if problems:
            result.wrong.append(f"row {key}: " + "; ".join(problems))
    return result


# -- faults and kills ---------------------------------------------------------------------------------


FAULT_KINDS = ("5xx", "429", "dropped connection")


def fault_counts(requests: list[dict[str, Any]]) -> Counter[str]:
    """Faults the sandbox injected, by kind and detail (``5xx``, ``5xx 503``, ``dropped connection``,
    ``dropped connection after the work``...), from its request log: ``fault`` says what it did. A 429
    without a fault is the ``rate_429`` setting's (the real rate limits are out of reach)."""
    kinds: Counter[str] = Counter()
    for entry in requests:
        fault = entry.get("fault")
        if fault and fault.startswith("status:"):
            status = fault.removeprefix("status:")
            kind = "5xx" if status.startswith("5") else status
            kinds[kind] += 1
            kinds[f"{kind} {status}"] += kind == "5xx"
        elif fault in ("drop_before", "drop_after"):
            kinds["dropped connection"] += 1
            kinds[f"dropped connection {'before' if fault == 'drop_before' else 'after'} the work"] += 1
        elif entry.get("status") == 429:
            kinds["429"] += 1
    return +kinds


def endpoint(path: str) -> str:
    """A request's path with its ids and identifiers replaced by ``{id}`` (requests are counted by endpoint)."""
    return "/".join("{id}" if p.isdigit() or "%40" in p or "@" in p else p for p in path.split("/"))


@dataclass
class Moment:
    """When a task is killed: at ``start``, once ``chunks`` chunk files exist (the n-th being written),
    at its n-th ``request`` to Brevo (done, not yet answered); for the load also at its first ``poll`` of
    Brevo's import processes (waiting for the imports it recorded, or recovering them), once it moved the
    ``cursor``, or once its run is ``settled`` (recorded as finished, not yet returned)."""

    kind: str
    n: int = 0
    of: int = 0

    def __str__(self) -> str:
        if self.kind == "start":
            return "as it started"
        if self.kind == "chunks":
            return f"writing chunk file {self.n} of {self.of}"
        if self.kind == "request":
            return f"at its request {self.n} to Brevo (done by Brevo, not yet answered)"
        if self.kind == "poll":
            return "at its first request about Brevo's import processes (the imports it recorded)"
        if self.kind == "cursor":
            return "once it moved the cursor, before recording its run as settled"
        return "once its run was recorded as settled, before it returned"


@dataclass
class Kill:
    run: int
    stage: str
    attempt: int
    moment: Moment
    seconds: float
    request: str = ""

    def __str__(self) -> str:
        what = f" ({self.request})" if self.request else ""
        when = f"{self.seconds:.2f} s after it started"
        return f"run {self.run} {self.stage}, try {self.attempt}: {self.moment}{what}, {when}"


class RequestTrap:
    """Kills a task from inside the sandbox when it makes its n-th request (of those whose path starts
    with ``prefix``), once the sandbox logged it: before the answer is sent."""

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        self._log_request = sandbox._log_request
        self.task: Any = None
        self.count = 0
        self.at = 0
        self.prefix = ""
        self.fired: str | None = None
        sandbox._log_request = self._logged

    def arm(self, task: Any, at: int, prefix: str = "") -> None:
        self.task, self.count, self.at, self.prefix, self.fired = task, 0, at, prefix, None

    def disarm(self) -> None:
        self.task = None

    def _logged(self, method: str, path: str, *args: Any) -> None:
        self._log_request(method, path, *args)
        task = self.task
        if task is None or not path.startswith(self.prefix):
            return
        self.count += 1
        if self.count == self.at and task.kill():
            self.fired = f"{method} {endpoint(path)}"


class Dag:
    """One definition synced run by run: each task forked from the stage server, the state (cursor,
    XCom, staging, ledger) in one folder as Airflow would keep it."""

    def __init__(
        self,
        root: Path,
        definition: dict[str, Any],
        server: Any,
        env: dict[str, str],
        sandbox: Any,
        chunk: int,
        deadline: float = math.inf,
    ) -> None:
        from servers.stage_process import OPERATOR_ARGS, write_definition

        self.deadline = deadline  # time.monotonic() past which no task may run
        self.root, self.definition, self.server, self.env, self.sandbox = root, definition, server, env, sandbox
        write_definition(root, definition)
        (root / OPERATOR_ARGS).write_text(json.dumps({"extract": {"chunk_size": chunk}}))
        self.dag_id = f"contactsync__{definition['integration']}__{definition['source']['name']}"
        self.trap = RequestTrap(sandbox)
        self.runs = 0
        self.stage_seconds: Counter[str] = Counter()
        self.summaries: list[dict[str, Any]] = []
        """Each run's summary (the load task's result)."""

    def timeout(self) -> float:
        """Seconds the next task may take: :data:`TASK_TIMEOUT`, less when the suite's deadline is nearer."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the fault suite passed its deadline (SuiteConfig.deadline)")
        return min(TASK_TIMEOUT, left)

    def run_folder(self, run_id: str) -> Path:
        return self.root / "staging" / self.dag_id / "runs" / run_id

    def xcom(self) -> dict[str, Any]:
        path = self.root / "xcom.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def run(self, kills: Callable[[str], Iterator[Callable[[], Moment]]] | None = None) -> tuple[list[Kill], list[str]]:
        """One DAG run; ``kills(stage)`` yields moment-drawers, one per kill planned for that stage.
        Returns the kills that landed and the stages whose kill missed (the task ended first)."""
        self.runs += 1
        run_id = f"run-{self.runs}"
        (self.root / "xcom.json").unlink(missing_ok=True)
        landed: list[Kill] = []
        missed: list[str] = []
        for stage in STAGES:
            attempt = 0
            done = False
            for draw in kills(stage) if kills else ():
                if done:
                    missed.append(stage)
                    continue
                attempt += 1
                kill = self._attempt_killed(stage, run_id, attempt, draw())
                if kill is None:
                    done = True
                    missed.append(stage)
                else:
                    landed.append(kill)
            if not done:
                attempt += 1
                started = time.monotonic()
                task = self.server.start(stage, self.root, self.env, run_id=run_id)
                code = task.wait(self.timeout())
                self.stage_seconds[stage] += time.monotonic() - started
                if code != 0:
                    raise RuntimeError(f"{stage} (run {self.runs}, try {attempt}) failed: {_tail(task.log)}")
        self.summaries.append(self.xcom()["load"])
        return landed, missed

    def _attempt_killed(self, stage: str, run_id: str, attempt: int, moment: Moment) -> Kill | None:
        """One try of a task, killed at ``moment``; None when it ended first (then it succeeded)."""
        folder = self.run_folder(run_id) / STAGE_FOLDERS.get(stage, stage)
        before = _chunk_files(folder)  # the killed try's files: the retry clears and rewrites them
        started = time.monotonic()
        timeout = self.timeout()
        cursor = _cursor(self.root)
        task = self.server.start(stage, self.root, self.env, run_id=run_id)
        request = ""
        if moment.kind == "start":
            task.kill()
        elif moment.kind == "request":
            self.trap.arm(task, moment.n)
        elif moment.kind == "poll":
            self.trap.arm(task, 1, "/v3/processes")
        try:
            while task.poll() is None:
                if moment.kind == "chunks" and len(_chunk_files(folder) - before) >= moment.n:
                    task.kill()
                elif moment.kind == "settled" and _settled(self.root / "staging" / self.dag_id, run_id):
                    task.kill()
                elif moment.kind == "cursor" and _cursor(self.root) not in (cursor, None):
                    task.kill()
                elif time.monotonic() - started > timeout:
                    task.kill()
                    raise TimeoutError(f"{stage} did not reach its kill moment ({moment}): {_tail(task.log)}")
                time.sleep(0.001)  # polling interval, not a wait for a guessed duration
            request = (self.trap.fired or "") if moment.kind in ("request", "poll") else ""  # which request
        finally:
            self.trap.disarm()
        seconds = time.monotonic() - started
        self.stage_seconds[stage] += seconds
        if task.returncode == -9:
            return Kill(self.runs, stage, attempt, moment, seconds, request)
        if task.returncode != 0:
            raise RuntimeError(f"{stage} (run {self.runs}, try {attempt}) failed: {_tail(task.log)}")
        return None


def _chunk_files(folder: Path) -> set[tuple[str, int, int]]:
    """The chunk files of a stage folder, each told apart from an earlier try's by inode and mtime."""
    found = set()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith("chunk-") and entry.name.endswith(".msgpack"):
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            found.add((entry.name, stat.st_ino, stat.st_mtime_ns))
    return found


def _settled(dag_root: Path, run_id: str) -> bool:
    path = dag_root / "state" / "sent-contacts.sqlite"
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05)) as db:
            return db.execute("SELECT 1 FROM settled_runs WHERE run_id = ?", (run_id,)).fetchone() is not None
    except sqlite3.OperationalError:  # being written, or the table is not there yet: look again
        return False


def _cursor(state: Path) -> Any:
    """The stored cursor (the asset state file), or None while it is being written."""
    try:
        return json.loads((state / "asset_state.json").read_text()).get("cursor", "none")
    except FileNotFoundError:
        return "none"
    except ValueError:  # half-written: look again
        return None


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


# -- the suite ------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    runs: int = 0
    updates: list[Update] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    kills: list[Kill] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    comparison: Comparison | None = None
    seconds: float = 0.0
    stage_seconds: Counter[str] = field(default_factory=Counter)
    summaries: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    config: SuiteConfig
    phases: list[Phase] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return sum(len(p.comparison.lost) for p in self.phases if p.comparison)

    @property
    def duplicated(self) -> int:
        return sum(len(p.comparison.duplicated) for p in self.phases if p.comparison)

    @property
    def wrong(self) -> int:
        return sum(len(p.comparison.wrong) for p in self.phases if p.comparison)

    @property
    def kills(self) -> list[Kill]:
        return [k for p in self.phases for k in p.kills]


class Sandbox:
    """A Brevo sandbox with the suite's random faults, seeded; the integration's attributes and a list."""

    def __init__(self, folder: Path, config: SuiteConfig, seed: int) -> None:
        from airflow_provider_contactsync.sandbox import BrevoSandbox
        from airflow_provider_contactsync.sandbox.faults import Faults
        from airflow_provider_contactsync.sandbox.limits import RateLimiter
        from airflow_provider_contactsync.sandbox.settings import FAST_SETTINGS

        self.api_key = secrets.token_hex(12)
        folder.mkdir(parents=True, exist_ok=True)
        self.sandbox = BrevoSandbox(
            folder / "brevo.sqlite3",
            self.api_key,
            **FAST_SETTINGS,
            request_log_size=10_000_000,
            fault_5xx=config.fault_5xx,
            rate_429=config.rate_429,
            fault_drop=config.fault_drop,
        )
        self.sandbox.faults = Faults(self.sandbox.settings, random.Random(seed))
        self.sandbox.limiter = RateLimiter(self.sandbox.settings, random.Random(seed + 1))
        self.sandbox.start()
        for name, kind in INTEGRATION_ATTRIBUTES:
            self.sandbox.create_attribute(name, kind)
        self.list_id = self.sandbox.create_list("customers")

    def connection(self) -> str:
        return json.dumps(
            {
                "conn_type": "brevo",
                "host": self.sandbox.url,
                "password": self.api_key,
                "extra": {"poll_interval": 0.05},
            }
        )

    def attributes(self) -> list[dict[str, Any]]:
        from airflow_provider_contactsync.sandbox.api import Request

        return self.sandbox.api.dispatch(Request("GET", "/v3/contacts/attributes", {}, b"")).body["attributes"]

    def stop(self) -> None:
        self.sandbox.stop()


def run_suite(config: SuiteConfig, postgres: Any, workdir: Path, say: Callable[[str], None] = print) -> Report:
    """Both phases (see the module's docstring); ``postgres``: a ``servers.postgres.PostgresServer``."""
    from servers.stage_process import StageServer

    started = time.monotonic()
    deadline = started + config.deadline if config.deadline else math.inf
    report = Report(config)
    rng = random.Random(config.seed)
    dbname = postgres.create_database()
    pg_connection = postgres.airflow_connection(dbname)
    say(
        f"fault suite: {config.rows:,} rows, seed {config.seed}; the sandbox answers {config.fault_5xx:.0%} 5xx,"
        f" {config.rate_429:.0%} 429 and drops {config.fault_drop:.0%} of connections; {config.kills} kills"
    )
    server_env = {"AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    if "AIRFLOW_HOME" not in os.environ:
        server_env["AIRFLOW_HOME"] = str(workdir / "airflow-home")
    try:
        with postgres.connect(dbname) as conn, StageServer(server_env) as server:
            fill(conn, config.rows)
            for number, name in ((1, "faults"), (2, "faults and kills")):
                phase = Phase(name)
                report.phases.append(phase)
                phase_started = time.monotonic()
                sandbox = Sandbox(workdir / f"phase-{number}", config, rng.randrange(2**32))
                try:
                    env = {"AIRFLOW_CONN_FAULT_PG": pg_connection, "AIRFLOW_CONN_FAULT_BREVO": sandbox.connection()}
                    definition = definition_for(f"faults{number}", sandbox.list_id)
                    folder = workdir / f"phase-{number}" / "dag"
                    dag = Dag(folder, definition, server, env, sandbox.sandbox, config.chunk, deadline)
                    if number == 1:
                        _phase_faults(dag, conn, rng, config, phase)
                    else:
                        _phase_kills(dag, conn, rng, config, phase)
                    expected, rejected = expected_contacts(conn, definition, sandbox.attributes())
                    mapped = list(definition["mapping"].values())
                    phase.comparison = compare(expected, rejected, sandbox.sandbox.contacts(), sandbox.list_id, mapped)
                    log = sandbox.sandbox.requests()
                    phase.requests = Counter(f"{e['method']} {endpoint(e['path'])}" for e in log)
                    phase.faults = fault_counts(log)
                    phase.stage_seconds = dag.stage_seconds
                    phase.summaries = dag.summaries
                finally:
                    sandbox.stop()
                phase.seconds = time.monotonic() - phase_started
                say_phase(phase, say)
    finally:
        postgres.drop_database(dbname)
    report.seconds = time.monotonic() - started
    say(
        f"total: lost {report.lost}, duplicated {report.duplicated}, wrong {report.wrong};"
        f" {len(report.kills)} kills; wall time {report.seconds:.1f} s (seed {config.seed})"
    )
    return report


def _phase_faults(dag: Dag, conn: Any, rng: random.Random, config: SuiteConfig, phase: Phase) -> None:
    dag.run()
    phase.updates.append(update(conn, rng, config.rows, config.update_share, 1))
    dag.run()
    phase.runs = dag.runs


def _phase_kills(dag: Dag, conn: Any, rng: random.Random, config: SuiteConfig, phase: Phase) -> None:
    """Spread ``config.kills`` over the stages (a quarter each) and the runs (at random), then run."""
    runs = max(1, config.kill_runs)
    plan: dict[tuple[int, str], int] = Counter()
    order = [STAGES[i % len(STAGES)] for i in range(config.kills)]
    rng.shuffle(order)
    for stage in order:
        plan[(rng.randrange(runs), stage)] += 1
    carried: Counter[str] = Counter()
    run = 0
    cursor_value: str | None = None
    while run < runs or (sum(carried.values()) and run < runs + MAX_EXTRA_RUNS):
        if run:
            phase.updates.append(update(conn, rng, config.rows, config.update_share, run + 1))
            cursor_value = phase.updates[-1].cursor_value
        extract_chunks = math.ceil(rows_since(conn, cursor_value) / config.chunk)
        wanted = {stage: plan.get((run, stage), 0) + carried[stage] for stage in STAGES}
        carried.clear()

        def kills(
            stage: str, wanted: dict[str, int] = wanted, extract_chunks: int = extract_chunks
        ) -> Iterator[Callable[[], Moment]]:
            for _ in range(wanted[stage]):
                yield lambda: _draw(
                    rng, stage, extract_chunks if stage == "extract" else len(dag.xcom()["extract"]["chunks"])
                )

        landed, missed = dag.run(kills)
        phase.kills.extend(landed)
        phase.missed.extend(f"run {dag.runs} {stage}" for stage in missed)
        carried.update(missed)
        run += 1
    phase.runs = dag.runs
    if carried:
        raise RuntimeError(f"kills still missed their moment after {MAX_EXTRA_RUNS} extra runs: {dict(carried)}")


def _draw(rng: random.Random, stage: str, chunks: int) -> Moment:
    """A moment of a task, uniformly among what it does (see :class:`Moment`)."""
    moments = [Moment("chunks", k, chunks) for k in range(1, chunks)]  # the last file: the task may end first
    if stage == "map":
        moments.append(Moment("request", 1))  # the account's attributes
    if stage == "load":
        moments = [Moment("request", n) for n in range(1, 5)] + [Moment(k) for k in ("poll", "cursor", "settled")]
    return rng.choice(moments or [Moment("start")])


def say_phase(phase: Phase, say: Callable[[str], None]) -> None:
    comparison = phase.comparison
    say(f"\nphase: {phase.name} ({phase.runs} DAG runs, {phase.seconds:.1f} s)")
    for number, change in enumerate(phase.updates, start=1):
        say(
            f"  update {number}: {change.rows:,} rows ({change.at_cursor:,} stamped with the cursor's value"
            f" {change.cursor_value}, the others fifty to a timestamp; {change.emails_changed} emails changed,"
            f" {change.fixed} rejected rows fixed)"
        )
    for number, summary in enumerate(phase.summaries, start=1):
        counts = ", ".join(f"{name} {summary.get(name, 0):,}" for name in RUN_COUNTS if summary.get(name))
        say(f"  run {number}: {counts}; requests {summary.get('brevo requests')}")
    say(f"  requests to Brevo: {sum(phase.requests.values()):,}")
    for name, count in phase.requests.most_common():
        say(f"    {name:<40} {count:>7,}")
    say(f"  faults injected: {sum(phase.faults[kind] for kind in FAULT_KINDS):,}")
    for kind in FAULT_KINDS:
        say(f"    {kind:<40} {phase.faults[kind]:>7,}")
        for detail in sorted(k for k in phase.faults if k.startswith(f"{kind} ")):
            say(f"      {detail.removeprefix(kind).strip():<38} {phase.faults[detail]:>7,}")
    if phase.kills or phase.missed:
        by_stage = Counter(k.stage for k in phase.kills)
        say(f"  kills: {len(phase.kills)} (" + ", ".join(f"{s} {by_stage[s]}" for s in STAGES) + ")")
        for number, kill in enumerate(phase.kills, start=1):
            say(f"    {number:>2}. {kill}")
        if phase.missed:
            say(f"  kills that missed (the task ended first; planned again later): {', '.join(phase.missed)}")
    say("  task time (s): " + ", ".join(f"{s} {phase.stage_seconds[s]:.1f}" for s in STAGES))
    if comparison is not None:
        say(
            f"  expected contacts {comparison.expected:,} ({comparison.rejected:,} rows rejected by the transform),"
            f" in the sandbox {comparison.contacts:,}"
        )
        say(f"  lost {len(comparison.lost)}, duplicated {len(comparison.duplicated)}, wrong {len(comparison.wrong)}")
        for name, items in (
            ("lost", comparison.lost),
            ("duplicated", comparison.duplicated),
            ("wrong", comparison.wrong),
        ):
            for item in items[:5]:
                say(f"    {name}: {item}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the source table (default 100,000)")
    parser.add_argument("--seed", type=int, default=None, help="the RNG seed (default: a random one, printed)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs in phase 2 (default 20)")
    parser.add_argument("--update-share", type=float, default=0.10, help="share of rows updated between runs")
    parser.add_argument("--fault-5xx", type=float, default=0.10)
    parser.add_argument("--rate-429", type=float, default=0.05)
    parser.add_argument("--fault-drop", type=float, default=0.02)
    parser.add_argument("--chunk-size", type=int, default=0, help="rows per extract chunk (default rows / 20)")
    parser.add_argument("--kill-runs", type=int, default=3, help="DAG runs of phase 2 the kills are spread over")
    parser.add_argument("--deadline", type=float, default=0.0, help="seconds the suite may take (default: no limit)")
    args = parser.parse_args()
    config = SuiteConfig(
        rows=args.rows,
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(2**31),
        kills=args.kills,
        update_share=args.update_share,
        fault_5xx=args.fault_5xx,
        rate_429=args.rate_429,
        fault_drop=args.fault_drop,
        chunk_size=args.chunk_size,
        kill_runs=args.kill_runs,
        deadline=args.deadline,
    )
    from servers.postgres import start_server

    server = start_server(settings={"shared_buffers": "64MB"})
    try:
        with tempfile.TemporaryDirectory(prefix="contactsync-faults-") as tmp:
            report = run_suite(config, server, Path(tmp))
    finally:
        server.stop()
    sys.exit(0 if report.lost == report.duplicated == report.wrong == 0 else 1)


if __name__ == "__main__":
    main()
