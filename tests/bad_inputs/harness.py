"""Runs bad-input cases in one long-lived worker process and says how each one ended.

One process per case would cost a Python (and an Airflow) start-up per case; one process for all
would let a hang or a crash take the others with it. So a :class:`Worker` is a spawned process fed
case names one at a time through a pipe; the parent waits at most ``deadline`` seconds (60) for
each answer. A case over the deadline is a hang: the worker's process group is killed and a new
worker is started for the next case. A worker that dies (a C stack overflow, the memory cap) ends
its case as a crash. Each case writes its inputs into a folder of its own, removed afterwards.

The worker caps its address space (``MEMORY_LIMIT``), so a YAML bomb that expands ends as a
MemoryError (a crash) instead of taking the machine's memory from everyone else.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .cases import (
    ACCEPTED,
    CLEAR_ERROR,
    CRASH,
    HANG,
    PER_ROW_REJECT,
    SILENT_DROP,
    UNCLEAR_ERROR,
    WRONG_PASS,
    Case,
    Expect,
    Inputs,
    RowsFile,
    write_inputs,
)

DEADLINE = 60.0
"""Seconds a case may take before it counts as a hang (a guard, not a speed assertion)."""
WARM_DEADLINE = 300.0
"""Seconds for a worker's one-time set-up of a channel (importing Airflow, migrating its database)."""
MEMORY_LIMIT = 4 << 30
"""Address space of a worker, bytes."""

WORKER_LOG: Path | None = None
"""In a worker: the file its stdout and stderr go to (Airflow's task logs during DAG runs)."""

PARSING_CONTEXT_ENV = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"
BAD_DAG_ID = "contactsync__crm__customers"
"""The DAG id the bad definitions ask for (integration crm, source customers)."""
COMPANION = """\
integration: ok
source:
  name: companion
  type: postgres
  conn_id: crm_pg
  table: public.customers
  fields: [id, email]
  key: id
mapping:
  email: EMAIL
  id: EXT_ID
destination:
  list_ids: [5]
"""
COMPANION_DAG_ID = "contactsync__ok__companion"

TRACEBACK = "Traceback (most recent call last)"
LIMIT_WORDS = re.compile(
    r"limit|deeper than|more than|at most|maximum|too (?:long|deep|many|large|big)|exceed|over \d|longer than",
    re.IGNORECASE,
)
LOADER_BUG = re.compile(r": (?P<name>[A-Z]\w*(?:Error|Exception|Exit|Iteration)): ")


@dataclass(frozen=True)
class Result:
    """How one case ended: one of the outcomes of :mod:`bad_inputs.cases`, and why."""

    name: str
    outcome: str
    detail: str
    seconds: float


# -- the parent's side --------------------------------------------------------------------------


class Worker:
    """A worker process fed cases one at a time; see the module docstring.

    :param root: folder under which each case writes its inputs (and the worker its log).
    :param deadline: seconds before a case counts as a hang.
    """

    def __init__(self, root: Path, *, deadline: float = DEADLINE) -> None:
        self.root = Path(root)
        self.deadline = deadline
        self.restarts = 0
        self._process: Any = None
        self._conn: Connection | None = None
        self._warm: set[str] = set()
        self._log = self.root / "worker.log"

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, str(self.root), str(self._log), os.getpid()), name="bad-inputs", daemon=False
        )
        self._process.start()
        child.close()
        self._conn = parent
        self._warm = set()

    def close(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert self._conn is not None
            self._conn.send(None)
        self._process.join(10)
        if self._process.is_alive():
            self._kill()
        self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _kill(self) -> None:
        """Kill the worker and everything it started (its own process group)."""
        pid = self._process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self._process.join(10)

    def _restart(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._kill()
        if self._conn is not None:
            self._conn.close()
        self._process = None
        self._conn = None
        self.restarts += 1
        self.start()

    def _ask(self, message: tuple[str, str], deadline: float) -> tuple[str, Any]:
        """("ok", answer), ("hang", None) or ("died", exit code)."""
        if self._process is None:
            self.start()
        assert self._conn is not None
        try:
            self._conn.send(message)
            if not self._conn.poll(deadline):
                return "hang", None
            return "ok", self._conn.recv()
        except (EOFError, OSError):
            self._process.join(10)
            return "died", self._process.exitcode

    def run(self, case: Case) -> Result:
        """Run one case and classify how it ended (never raises for the case's sake)."""
        warm = _warm_channel(case.channel)
        if warm not in self._warm:
            status, answer = self._ask(("warm", warm), WARM_DEADLINE)
            if status != "ok" or answer is not None:
                detail = f"worker set-up for {warm} failed: {status} {answer!r}\n{self.log_tail()}"
                self._restart()
                return Result(case.name, CRASH, detail, 0.0)
            self._warm.add(warm)
        started = time.monotonic()
        status, answer = self._ask(("run", case.name), self.deadline)
        seconds = time.monotonic() - started
        if status == "ok":
            return answer
        if status == "hang":
            self._restart()
            return Result(case.name, HANG, f"no answer after {self.deadline:.0f} s: worker killed", seconds)
        detail = f"the worker died (exit code {answer}) while running the case\n{self.log_tail()}"
        self._restart()
        return Result(case.name, CRASH, detail, seconds)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _warm_channel(channel: str) -> str:
    return {"validate": "cli", "preview": "cli", "parse": "parse", "dag_run": "dag_run"}[channel]


# -- the worker's side --------------------------------------------------------------------------


def _serve(conn: Connection, root: str, log: str, parent_pid: int) -> None:
    """The worker's loop: one message, one answer."""
    global WORKER_LOG
    os.setpgrp()  # so a hang is killed with every process the case started
    WORKER_LOG = Path(log)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    with contextlib.suppress(ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    _die_with_parent()
    threading.Thread(target=_orphan_watch, args=(parent_pid,), daemon=True).start()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    from . import cases_by_name

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        command, argument = message
        if command == "warm":
            try:
                _warm(argument)
                conn.send(None)
            except BaseException:
                conn.send(traceback.format_exc())
            continue
        case = cases_by_name()[argument]
        started = time.monotonic()
        folder = Path(tempfile.mkdtemp(prefix="case-", dir=root))
        try:
            outcome, detail = run_case(case, folder)
        except BaseException:  # the harness's own failure: say so, never hide it as a good ending
            outcome, detail = CRASH, "harness error: " + traceback.format_exc()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        conn.send(Result(case.name, outcome, _cut(detail), time.monotonic() - started))


def _die_with_parent() -> None:
    """Linux: the kernel kills the worker when its parent dies, even while a case holds the GIL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _orphan_watch(parent_pid: int) -> None:
    """End the worker when the process that started it is gone (a killed pytest must not leave it running)."""
    while True:
        time.sleep(1)
        if os.getppid() != parent_pid:
            os._exit(3)


def _warm(channel: str) -> None:
    if channel == "cli":
        import airflow_provider_contactsync.cli  # noqa: F401
    elif channel == "parse":
        import airflow_provider_contactsync.dag_factory  # noqa: F401
    elif channel == "dag_run":
        from .dag_runs import environment

        environment()


def run_case(case: Case, folder: Path) -> tuple[str, str]:
    """Make the case's inputs in ``folder``, run them through its channel, classify the ending."""
    inputs = case.make()
    if case.channel == "dag_run":
        from .dag_runs import run_dag_case

        return run_dag_case(case, inputs, folder)
    definition, rows = write_inputs(folder, case, inputs)
    if case.channel == "validate":
        return _validate(case, definition)
    if case.channel == "parse":
        return _parse(case, folder, definition)
    assert rows is not None and inputs.rows is not None
    return _preview(case, inputs, definition, rows, folder)


# -- validate -----------------------------------------------------------------------------------


@dataclass
class CliRun:
    code: int | None
    out: str
    err: str
    exception: str | None


@contextlib.contextmanager
def _captured() -> Iterator[list[io.TextIOWrapper]]:
    """stdout and stderr as a terminal gives them: UTF-8, strict (what cannot be written raises)."""
    streams = [
        io.TextIOWrapper(tempfile.TemporaryFile(), encoding="utf-8", errors="strict", newline="\n") for _ in range(2)
    ]
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = streams
    try:
        yield streams
    finally:
        sys.stdout, sys.stderr = saved


def _read(stream: io.TextIOWrapper) -> str:
    with contextlib.suppress(ValueError, UnicodeError):
        stream.flush()
    buffer = stream.buffer
    buffer.seek(0)
    text = buffer.read().decode("utf-8", "replace")
    with contextlib.suppress(ValueError, UnicodeError):
        stream.close()
    return text


def run_cli(argv: list[str]) -> CliRun:
    """``contactsync <argv>`` in this process; an exception escaping main() is kept, not raised."""
    from airflow_provider_contactsync.cli import main

    exception = None
    code: int | None = None
    with _captured() as (out, err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - whatever escapes main() is the finding
            exception = traceback.format_exc()
    return CliRun(code, _read(out), _read(err), exception)


def _validate(case: Case, definition: Path) -> tuple[str, str]:
    run = run_cli(["validate", str(definition)])
    crash = _cli_crash(run)
    if crash:
        return CRASH, crash
    if run.code == 0:
        return WRONG_PASS, f"validate accepted it: {run.out.strip()[:300]}"
    return _error_ending(case, run.err, [str(definition)])


def _cli_crash(run: CliRun) -> str | None:
    if run.exception is not None:
        return f"an exception escaped main():\n{run.exception}"
    if TRACEBACK in run.out or TRACEBACK in run.err:
        return "a traceback in the output:\n" + (run.err if TRACEBACK in run.err else run.out)
    if run.code not in (0, 1):
        return f"exit code {run.code}: {run.err.strip()[:500]}"
    return None


CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
"""Characters an error must show escaped: control characters, and bidi overrides that reorder a terminal line."""
SUMMARY_LINE = re.compile(r"\d+ valid, \d+ invalid|\d+ rows: .*")


def _stray_lines(text: str, prefixes: tuple[str, ...]) -> list[str]:
    """Lines of an error output that are not error lines: the input's line breaks or a multi-line message."""
    return [
        line
        for line in text.splitlines()
        if line and not line.startswith(prefixes) and not SUMMARY_LINE.fullmatch(line)
    ]


def _error_ending(
    case: Case,
    text: str,
    paths: list[str],
    keys: tuple[str, ...] = (),
    *,
    prefixes: tuple[str, ...] = ("error: ", "note: "),
) -> tuple[str, str]:
    """CLEAR_ERROR when ``text`` names one of ``paths`` and a key or line (and the limit, for limits),
    one problem a line, the input's characters escaped."""
    stray = _stray_lines(text, prefixes)
    if stray:
        return UNCLEAR_ERROR, f"the error output has lines that are not error lines: {stray[:3]!r}\n{text[:500]}"
    if CONTROL.search(text):
        return UNCLEAR_ERROR, f"the error shows control or bidi characters unescaped: {text[:500]!r}"
    lines = [line for line in text.splitlines() if any(path in line for path in paths)]
    shown = "\n".join(lines[:5]) if lines else text.strip()[:500]
    if not lines:
        return UNCLEAR_ERROR, f"the error does not name the file {paths[0]}:\n{text.strip()[:500]}"
    named = "\n".join(lines)
    keys = keys or case.keys
    if not (
        case.file_level
        or (case.limit and LIMIT_WORDS.search(named))  # a limit of the whole file (its size) has no line
        or any(re.search(re.escape(path) + r":\d+", named) for path in paths)
        or re.search(r"\blines? \d+", named)
        or any(key in named for key in keys)
    ):
        return UNCLEAR_ERROR, f"the error names no key or line (expected one of {keys or 'a line'}):\n{shown}"
    if case.limit and not LIMIT_WORDS.search(named):
        return UNCLEAR_ERROR, f"the error does not name the limit it hit:\n{shown}"
    return CLEAR_ERROR, shown


# -- the DAG factory's parse --------------------------------------------------------------------


def _parse(case: Case, folder: Path, definition: Path) -> tuple[str, str]:
    """check_definitions (the import error), load_dags (the good DAGs), load_dags on a worker."""
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    from airflow_provider_contactsync.dag_factory import ContactsyncDefinitionsError, check_definitions, load_dags

    (folder / "companion.yaml").write_text(COMPANION)
    try:
        try:
            check_definitions(folder)
        except ContactsyncDefinitionsError as exc:
            error: ContactsyncDefinitionsError | None = exc
        except BaseException:  # noqa: BLE001
            return CRASH, "check_definitions raised something else than its import error:\n" + traceback.format_exc()
        else:
            error = None
        try:
            dags = load_dags(folder)
        except BaseException:  # noqa: BLE001
            return CRASH, "load_dags raised (it must never raise for a broken file):\n" + traceback.format_exc()
        os.environ[PARSING_CONTEXT_ENV] = BAD_DAG_ID
        try:
            load_dags(folder)
        except ContactsyncDefinitionsError:
            pass
        except BaseException:  # noqa: BLE001
            return (
                CRASH,
                "load_dags on a worker raised something else than its import error:\n" + traceback.format_exc(),
            )
        finally:
            del os.environ[PARSING_CONTEXT_ENV]
    finally:
        DagContext.autoregistered_dags.clear()
    if COMPANION_DAG_ID not in dags:
        return SILENT_DROP, f"the good definition next to it lost its DAG: load_dags gave {sorted(dags)}"
    if error is None:
        return WRONG_PASS, f"check_definitions found nothing wrong; load_dags built {sorted(dags)}"
    message = str(error)
    if TRACEBACK in message:
        return CRASH, "a traceback in the import error:\n" + message[:2000]
    problem = error.problems.get(str(definition))
    if problem is None:
        return UNCLEAR_ERROR, f"the import error does not list the file:\n{message[:500]}"
    bug = LOADER_BUG.search(problem[: len(str(definition)) + 200])
    if bug and problem.startswith(f"{definition}: {bug['name']}: "):
        return CRASH, f"the loader raised {bug['name']} (reported as a loader bug):\n{problem[:1000]}"
    return _error_ending(case, problem, [str(definition)], prefixes=(str(definition),))


# -- preview ------------------------------------------------------------------------------------


def _preview(case: Case, inputs: Inputs, definition: Path, rows: Path, folder: Path) -> tuple[str, str]:
    argv = ["preview", str(definition), "--rows", str(rows)]
    if inputs.attributes is not None:
        attributes = folder / "attributes.json"
        attributes.write_text(json.dumps({"attributes": inputs.attributes}))
        argv += ["--attributes", str(attributes)]
    run = run_cli(argv)
    crash = _cli_crash(run)
    if crash:
        return CRASH, crash
    assert inputs.rows is not None
    if run.code == 1:
        keys = ("header", "empty", "encoding") if inputs.rows.whole else ()
        ending, detail = _error_ending(case, run.err, [str(rows), str(definition)], keys=keys + case.keys)
        if ending == CLEAR_ERROR and not inputs.rows.whole and case.kind not in ("formula",):
            detail = "the whole file was refused (its valid rows were not previewed):\n" + detail
        return ending, detail
    records = []
    for number, line in enumerate(run.out.splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except ValueError:
            return CRASH, f"preview printed output line {number} that is not JSON: {line[:200]!r}"
    return classify_rows(inputs.rows, preview_view(records))


@dataclass
class RowsView:
    """What a run made of a file's rows, whatever the channel.

    :param loaded: EXT_ID -> EMAIL of the rows that are ok (preview) or in Brevo (DAG run).
    :param rejects: one ``(row, field, value, reason)`` per reject (preview: the record's row
        number; DAG run: the error report's row and file).
    """

    loaded: dict[str, str | None]
    rejects: list[tuple[str, str | None, str | None, str]]
    emails: set[str]
    by_number: bool = False
    """Rejects name rows by number (preview), not by key (error report)."""


def preview_view(records: list[dict[str, Any]]) -> RowsView:
    loaded: dict[str, str | None] = {}
    rejects = []
    for record in records:
        if record.get("status") == "ok":
            contact = record.get("contact") or {}
            loaded[str(contact.get("EXT_ID"))] = contact.get("EMAIL")
        else:
            for error in record.get("errors") or [{"field": None, "value": None, "reason": "(no reason given)"}]:
                rejects.append(
                    (str(record.get("row")), error.get("field"), error.get("value"), error.get("reason") or "")
                )
    emails = {email for email in loaded.values() if email}
    return RowsView(loaded, rejects, emails, by_number=True)


def _matches(expect: Expect, reject: tuple[str, str | None, str | None, str], *, by_number: bool) -> bool:
    """Whether a reject is the bad row's: its line named, or its number (preview) or key (report) as row."""
    row, _field, value, reason = reject
    if re.search(rf"\bline {expect.line}\b", reason):
        return True
    if expect.value is not None and value == expect.value:
        return True
    if by_number:
        return expect.index is not None and row == str(expect.index) and not re.search(r"\bline \d+", reason)
    return expect.ext_id is not None and row == expect.ext_id


def classify_rows(rows: RowsFile, view: RowsView) -> tuple[str, str]:
    """PER_ROW_REJECT when every bad row is rejected naming it and every valid row is loaded."""
    if rows.whole:
        if view.loaded:
            return WRONG_PASS, f"a file that cannot be read was taken: {len(view.loaded)} rows ok"
        return PER_ROW_REJECT, f"every row rejected instead of the file refused: {view.rejects[:3]}"
    missing = [e for e in rows.rows if e.ok and (e.ext_id not in view.loaded or view.loaded[e.ext_id] != e.email)]
    passed, unmatched, rejected = [], [], 0
    for expect in rows.rows:
        if expect.ok:
            continue
        if expect.ext_id is not None and expect.ext_id in view.loaded:
            if not expect.may_pass:
                passed.append(expect)
            continue
        if any(_matches(expect, reject, by_number=view.by_number) for reject in view.rejects):
            rejected += 1
        else:
            unmatched.append(expect)
    valid = sum(e.ok for e in rows.rows)
    if missing:
        shown = ", ".join(f"{e.ext_id} (line {e.line})" for e in missing[:5])
        return SILENT_DROP, f"{len(missing)} of {valid} valid rows not ok/loaded: {shown}; rejects: {view.rejects[:3]}"
    if passed:
        shown = ", ".join(f"line {e.line} ({e.ext_id}{': ' + e.value if e.value else ''})" for e in passed)
        return WRONG_PASS, f"bad rows passed as ok: {shown}"
    if unmatched:
        shown = ", ".join(f"line {e.line}" for e in unmatched)
        if view.rejects:
            return UNCLEAR_ERROR, f"no reject names the bad row at {shown}; rejects: {view.rejects[:3]}"
        return SILENT_DROP, f"the bad row at {shown} vanished: neither ok nor rejected"
    if rejected == 0:
        return ACCEPTED, f"its bad rows were taken as data; {valid} valid rows ok"
    reasons = [reject[3] for reject in view.rejects][:3]
    return PER_ROW_REJECT, f"{rejected} bad rows rejected, {valid} valid rows ok; e.g. {reasons}"


def _cut(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"
