"""The DAG factory: one DAG per definition, broken files reported apart from the DAGs, the worker case.

Through Airflow's DagBag: which file each DAG and each import error belongs to is what decides,
in a real dag-processor, which DAGs get deactivated (tests/test_airflow_definition_isolation.py
checks that end to end).
"""

from __future__ import annotations

import logging
import shutil
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions._internal.contextmanager import DagContext
from airflow.serialization.serialized_objects import DagSerialization

import airflow_provider_contactsync.dag_factory.folder as folder_module
from airflow_provider_contactsync.core.spec import SourceDefinition, load_definition, parse_definition
from airflow_provider_contactsync.core.spec.loader import _fields_named_in
from airflow_provider_contactsync.dag_factory import (
    DEFAULT_ARGS,
    ContactsyncDefinitionsError,
    build_dag,
    check_definitions,
    definitions_folder,
    load_dags,
)
from airflow_provider_contactsync.dag_factory.index import dag_id_of, files_for_dag_id, split_dag_id

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAG_FILE = ROOT / "example_dags" / "contactsync_dags.py"
DEMO = ROOT / "example_dags" / "definitions" / "demo_customers.yaml"
PARSING_CONTEXT_ENV = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"
ONE_LINER = "from airflow_provider_contactsync.dag_factory import load_dags; load_dags()\n"
CHECK_LINER = "from airflow_provider_contactsync.dag_factory import check_definitions; check_definitions()\n"


def definition_text(name: str = "customers", integration: str = "crm", schedule: str = "hourly") -> str:
    return textwrap.dedent(
        f"""\
        integration: {integration}
        description: Customers of the CRM.
        source:
          name: {name}
          type: postgres
          conn_id: crm_pg
          table: public.customers
          fields: [id, email, first_name, phone, updated_at]
          updated_field: updated_at
          key: id
        schedule: "{schedule}"
        transform:
          email: email.normalizeEmail()
          phone: phone.normalizePhoneNumber("FR")
        mapping:
          email: EMAIL
          phone: SMS
          id: EXT_ID
          first_name: FIRSTNAME
        destination:
          list_ids: [5]
        alerts:
          emails: [data@example.com]
        """
    )


def write(folder: Path, filename: str, text: str) -> Path:
    path = folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def dag_folder(tmp_path: Path) -> Path:
    """A DAGs folder holding the two one-line DAG files and an empty definitions/ folder."""
    write(tmp_path, "contactsync_dags.py", ONE_LINER)
    write(tmp_path, "contactsync_check.py", CHECK_LINER)
    (tmp_path / "definitions").mkdir()
    return tmp_path


@pytest.fixture(autouse=True)
def _no_parsing_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARSING_CONTEXT_ENV, raising=False)


def dag_bag(folder: Path) -> DagBag:
    return DagBag(dag_folder=str(folder), load_op_links=False)


# --- build_dag -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("manual", None), ("hourly", "@hourly"), ("daily", "@daily"), ("*/15 * * * *", "*/15 * * * *")],
)
def test_schedule(schedule: str, expected: str | None) -> None:
    dag = build_dag(parse_definition(definition_text(schedule=schedule)))
    assert dag.schedule == expected
    assert dag.timetable.can_be_scheduled is (expected is not None)


def test_dag_shape() -> None:
    definition = parse_definition(definition_text())
    dag = build_dag(definition, file="crm.yaml")
    assert dag.dag_id == "contactsync__crm__customers"
    assert set(dag.tags) == {"contactsync", "integration:crm", "source:postgres"}
    assert dag.description == "Customers of the CRM."
    assert "public.customers" in dag.doc_md and "crm.yaml" in dag.doc_md and "| `email` | EMAIL |" in dag.doc_md
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.start_date is not None and dag.start_date.year == 2024
    param = dag.params.get_param("full_refresh")
    assert param.value is False and param.schema["type"] == "boolean"
    assert [t.task_id for t in dag.topological_sort()] == ["extract", "transform", "map", "load"]
    for upstream, downstream in [("extract", "transform"), ("transform", "map"), ("map", "load")]:
        assert dag.get_task(upstream).downstream_task_ids == {downstream}


def test_tasks_retry_with_exponential_backoff() -> None:
    dag = build_dag(parse_definition(definition_text()))
    for task in dag.tasks:
        assert task.retries == 3
        assert task.retry_delay == timedelta(minutes=1)
        assert task.retry_exponential_backoff == 2.0  # a multiplier in Airflow 3.3 (True would be 1.0)
        assert task.max_retry_delay == timedelta(minutes=30)
    assert DEFAULT_ARGS["retry_exponential_backoff"] == 2.0


def test_user_default_args_override() -> None:
    dag = build_dag(parse_definition(definition_text()), default_args={"retries": 0, "owner": "crm-team"})
    assert {(t.retries, t.owner) for t in dag.tasks} == {(0, "crm-team")}


def test_operator_definition_round_trips() -> None:
    definition = load_definition(DEMO)
    dag = build_dag(definition, staging="file:///tmp/staging")
    for task in dag.tasks:
        assert SourceDefinition.model_validate(task.definition) == definition
        assert task.staging == "file:///tmp/staging"


def test_failure_alert_is_attached_per_task() -> None:
    dag = build_dag(parse_definition(definition_text()))
    callbacks = [task.on_failure_callback for task in dag.tasks]
    assert all(callbacks)
    assert len({id(c[0]) for c in callbacks}) == 4  # one notifier per task
    assert not dag.on_failure_callback  # DAG-level callbacks are unreliable in 3.x


def test_no_alert_without_recipients_and_user_callback_wins() -> None:
    quiet = parse_definition(definition_text().replace("  emails: [data@example.com]", "  emails: []"))
    assert not any(task.on_failure_callback for task in build_dag(quiet).tasks)

    def mine(context: object) -> None: ...

    dag = build_dag(parse_definition(definition_text()), default_args={"on_failure_callback": mine})
    assert all(task.on_failure_callback == [mine] for task in dag.tasks)


def test_dag_serialises() -> None:
    dag = build_dag(load_definition(DEMO))
    data = DagSerialization.to_dict(dag)
    restored = DagSerialization.from_dict(data)
    assert restored.dag_id == dag.dag_id
    assert sorted(restored.task_ids) == ["extract", "load", "map", "transform"]
    assert restored.max_active_runs == 1


# --- load_dags through Airflow's DagBag --------------------------------------------------------


def test_example_dag_files_load_without_import_errors(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "example_dags", tmp_path / "example_dags")
    bag = dag_bag(tmp_path / "example_dags")
    assert bag.import_errors == {}
    assert sorted(bag.dags) == [
        "contactsync__app__users",
        "contactsync__crm__customers",
        "contactsync__demo__customers",
        "contactsync__partners__drop",
        "contactsync__salesforce__contacts",
        "contactsync__shop__customers",
        "contactsync__shopify__customers",
        "contactsync__warehouse__users",
        "contactsync__webshop__customers",
        "contactsync__woocommerce__customers",
        "contactsync_export__newsletter__unsubscribes",
    ]
    assert {Path(dag.fileloc).name for dag in bag.dags.values()} == {"contactsync_dags.py"}


def test_broken_files_are_one_import_error_of_the_check_file_and_good_dags_still_load(dag_folder: Path) -> None:
    definitions = dag_folder / "definitions"
    write(definitions, "a_customers.yaml", definition_text("customers"))
    write(definitions, "shop/orders.yml", definition_text("orders", integration="shop", schedule="daily"))
    write(definitions, "b_typo.yaml", definition_text("typo").replace("  table:", "  tabel:").replace('"hourly"', "x"))
    write(definitions, "c_not_yaml.yaml", "integration: crm\nsource: [unclosed\n")
    write(definitions, ".hidden.yaml", "not: [a definition")

    bag = dag_bag(dag_folder)

    # The good DAGs belong to the DAG file, which has no import error: nothing marks them stale.
    assert set(bag.dags) == {"contactsync__crm__customers", "contactsync__shop__orders"}
    assert {Path(dag.fileloc).name for dag in bag.dags.values()} == {"contactsync_dags.py"}
    # The one import error belongs to the check file, which holds no DAG.
    (dag_file, message) = next(iter(bag.import_errors.items()))
    assert len(bag.import_errors) == 1 and dag_file.endswith("contactsync_check.py")
    assert "2 contactsync definition files could not be loaded; no DAG is built from them:" in message
    typo = definitions / "b_typo.yaml"
    assert f"{typo}:7: source.tabel: unknown key 'tabel' (did you mean 'table'?)" in message
    assert f"{typo}:11: schedule: 'x' is not manual, hourly, daily or a five-field cron expression" in message
    assert f"{definitions / 'c_not_yaml.yaml'}: line 3" in message and "not valid YAML" in message
    assert "DAGs not loaded: contactsync__crm__typo" in message  # c_not_yaml.yaml names no DAG id
    assert "a_customers" not in message and "orders" not in message
    assert "other DAGs are loaded" not in message


def test_yaml_bombs_are_import_errors_of_the_check_file_and_the_good_dags_load(dag_folder: Path) -> None:
    """Issue 11: a 342-byte billion-laughs file used to keep the DAG file past Airflow's timeout (and so
    remove every contactsync DAG); deep nesting and recursive aliases crashed the parse with RecursionError."""
    definitions = dag_folder / "definitions"
    write(definitions, "a_customers.yaml", definition_text("customers"))
    laughs = "\n".join(
        [f"a0: &a0 [{', '.join(['lol'] * 9)}]"]
        + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    )
    write(definitions, "b_laughs.yaml", laughs + "\n")
    write(definitions, "c_deep.yaml", definition_text("deep") + "extra: " + "[" * 10_000 + "]" * 10_000 + "\n")
    write(definitions, "d_recursive.yaml", definition_text("recursive") + "extra: &r {again: *r}\n")

    bag = dag_bag(dag_folder)

    assert set(bag.dags) == {"contactsync__crm__customers"}
    ((dag_file, message),) = bag.import_errors.items()
    assert dag_file.endswith("contactsync_check.py")
    assert "3 contactsync definition files could not be loaded" in message
    assert f"{definitions / 'b_laughs.yaml'}:" in message and "values after alias expansion" in message
    assert f"{definitions / 'c_deep.yaml'}:24: nested deeper than 64 levels" in message
    assert f"{definitions / 'd_recursive.yaml'}:24: extra.again: recursive alias" in message
    assert "RecursionError" not in message and "MemoryError" not in message
    assert "DAGs not loaded" not in message  # files over the limits are not read for their DAG ids either


def test_only_the_dag_file_still_loads_good_dags_and_logs_the_problems(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment without the check file (the one-line file of earlier releases): never silent."""
    write(tmp_path, "contactsync_dags.py", ONE_LINER)
    write(tmp_path, "definitions/a.yaml", definition_text())
    broken = write(tmp_path, "definitions/b.yaml", definition_text("typo").replace("  table:", "  tabel:"))
    with caplog.at_level(logging.ERROR, logger="airflow_provider_contactsync.dag_factory.folder"):
        bag = dag_bag(tmp_path)
    assert list(bag.dags) == ["contactsync__crm__customers"]
    assert bag.import_errors == {}
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert f"{broken}:7: source.tabel: unknown key 'tabel'" in logged
    assert "check_definitions()" in logged  # how to get them into the UI


def test_check_file_clears_once_every_file_is_good(dag_folder: Path) -> None:
    definitions = dag_folder / "definitions"
    path = write(definitions, "a.yaml", definition_text().replace("  table:", "  tabel:"))
    assert list(dag_bag(dag_folder).import_errors) == [str(dag_folder / "contactsync_check.py")]
    path.write_text(definition_text())
    bag = dag_bag(dag_folder)
    assert (list(bag.dags), bag.import_errors) == (["contactsync__crm__customers"], {})


def test_check_definitions_registers_no_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "crm.yaml", definition_text())
    write(tmp_path, "shop.yaml", definition_text("orders", integration="shop"))
    DagContext.autoregistered_dags.clear()
    monkeypatch.setattr(DagContext, "current_autoregister_module_name", __name__)
    try:
        assert check_definitions(tmp_path) is None
        registered = set(DagContext.autoregistered_dags)
    finally:
        DagContext.autoregistered_dags.clear()
    assert registered == set()  # a DAG here would belong to two files, and be deactivated with this one


def test_check_in_the_dag_file_itself_logs_instead_of_deactivating_its_dags(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "contactsync_dags.py", ONE_LINER + CHECK_LINER)  # the misuse: one file for both
    write(tmp_path, "definitions/a.yaml", definition_text())
    write(tmp_path, "definitions/b.yaml", definition_text("typo").replace("  table:", "  tabel:"))
    with caplog.at_level(logging.ERROR, logger="airflow_provider_contactsync.dag_factory.folder"):
        bag = dag_bag(tmp_path)
    assert (list(bag.dags), bag.import_errors) == (["contactsync__crm__customers"], {})
    assert "must be called from a DAG file of its own" in caplog.text and "contactsync__crm__customers" in caplog.text


def test_duplicate_dag_id_names_both_files(dag_folder: Path) -> None:
    definitions = dag_folder / "definitions"
    first = write(definitions, "a.yaml", definition_text())
    second = write(definitions, "b.yaml", definition_text(schedule="daily"))

    bag = dag_bag(dag_folder)

    assert list(bag.dags) == ["contactsync__crm__customers"]
    assert bag.dags["contactsync__crm__customers"].schedule == "@hourly"  # the first file wins
    (message,) = bag.import_errors.values()
    assert f"{second}: DAG id contactsync__crm__customers is already defined by {first}" in message
    assert "DAGs not loaded" not in message  # the DAG id is loaded, from the first file


def test_a_broken_file_does_not_lose_a_dag_id_another_file_gives(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", definition_text().replace("  table:", "  tabel:"))
    write(tmp_path, "b.yaml", definition_text())
    with pytest.raises(ContactsyncDefinitionsError) as caught:
        check_definitions(tmp_path)
    assert caught.value.lost_dag_ids == {}
    assert list(load_dags(tmp_path)) == ["contactsync__crm__customers"]


def test_strict_raises_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", definition_text())
    bad = write(tmp_path, "bad.yaml", definition_text("bad").replace("[5]", "[0]"))
    with pytest.raises(ContactsyncDefinitionsError) as caught:
        load_dags(tmp_path, strict=True)
    assert list(caught.value.problems) == [str(bad)]
    assert "destination.list_ids[0]" in caught.value.problems[str(bad)]
    assert caught.value.lost_dag_ids == {str(bad): "contactsync__crm__bad"}


def test_half_built_dag_is_not_registered_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_contactsync.operators import ContactsyncMapOperator

    def broken(self: object, **kwargs: object) -> None:
        raise RuntimeError("operator bug")

    crm = write(tmp_path, "crm.yaml", definition_text())
    monkeypatch.setattr(ContactsyncMapOperator, "__init__", broken)
    DagContext.autoregistered_dags.clear()
    monkeypatch.setattr(DagContext, "current_autoregister_module_name", __name__)
    try:
        with caplog.at_level(logging.ERROR, logger="airflow_provider_contactsync.dag_factory.folder"):
            assert load_dags(tmp_path) == {}
        with pytest.raises(ContactsyncDefinitionsError) as caught:
            check_definitions(tmp_path)
        registered = {dag.dag_id for dag, _ in DagContext.autoregistered_dags}
    finally:
        DagContext.autoregistered_dags.clear()
    assert registered == set()
    expected = f"{crm}: cannot build DAG contactsync__crm__customers: RuntimeError: operator bug"
    assert caught.value.problems == {str(crm): expected}
    assert expected in caplog.text


def test_definitions_folder_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dag_file = str(tmp_path / "dags" / "contactsync_dags.py")
    assert definitions_folder(None, dag_file) == tmp_path / "dags" / "definitions"
    assert definitions_folder("syncs", dag_file) == tmp_path / "dags" / "syncs"
    assert definitions_folder(tmp_path / "abs", dag_file) == tmp_path / "abs"
    monkeypatch.setenv("AIRFLOW__CONTACTSYNC__DEFINITIONS_FOLDER", str(tmp_path / "configured"))
    assert definitions_folder(None, dag_file) == tmp_path / "configured"


def test_load_dags_returns_the_dags(tmp_path: Path) -> None:
    write(tmp_path, "crm.yaml", definition_text())
    write(tmp_path, "shop.yaml", definition_text("orders", integration="shop"))
    dags = load_dags(tmp_path)
    assert sorted(dags) == ["contactsync__crm__customers", "contactsync__shop__orders"]


# --- the worker case ---------------------------------------------------------------------------


@pytest.fixture
def worker_folder(tmp_path: Path) -> Path:
    write(tmp_path, "a.yaml", definition_text("customers"))
    write(tmp_path, "b.yaml", definition_text("orders"))
    write(tmp_path, "c_broken.yaml", definition_text("broken").replace("table:", "tabel:"))
    write(tmp_path, "d_not_yaml.yaml", "integration: [")
    return tmp_path


def test_worker_builds_only_its_dag(worker_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Path] = []

    def counting_load(path: Path, **kwargs: bool) -> SourceDefinition:
        loaded.append(Path(path))
        return load_definition(path, **kwargs)

    monkeypatch.setattr(folder_module, "load_definition", counting_load)
    monkeypatch.setenv(PARSING_CONTEXT_ENV, "contactsync__crm__orders")
    dags = load_dags(worker_folder)
    assert list(dags) == ["contactsync__crm__orders"]
    assert [t.task_id for t in dags["contactsync__crm__orders"].tasks] == ["extract", "transform", "map", "load"]
    assert loaded == [worker_folder / "b.yaml"]  # the broken files were not validated


def test_worker_with_a_broken_definition_fails_saying_why(worker_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PARSING_CONTEXT_ENV, "contactsync__crm__broken")
    with pytest.raises(ContactsyncDefinitionsError, match="unknown key 'tabel'"):
        load_dags(worker_folder)


def test_worker_for_another_dag_builds_nothing(worker_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PARSING_CONTEXT_ENV, "some_other_dag")
    assert load_dags(worker_folder) == {}
    monkeypatch.setenv(PARSING_CONTEXT_ENV, "contactsync__crm__missing")
    assert load_dags(worker_folder) == {}


def test_worker_dag_in_a_dag_bag(dag_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    definitions = dag_folder / "definitions"
    write(definitions, "a.yaml", definition_text("customers"))
    write(definitions, "b.yaml", definition_text("broken").replace("table:", "tabel:"))
    monkeypatch.setenv(PARSING_CONTEXT_ENV, "contactsync__crm__customers")
    bag = dag_bag(dag_folder)  # a worker parses only the DAG's own file; the check file is a no-op too
    assert list(bag.dags) == ["contactsync__crm__customers"]
    assert bag.import_errors == {}


def test_check_definitions_does_nothing_on_a_worker(worker_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reading(path: Path, **kwargs: bool) -> SourceDefinition:
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(folder_module, "load_definition", no_reading)
    monkeypatch.setenv(PARSING_CONTEXT_ENV, "contactsync__crm__customers")
    assert check_definitions(worker_folder) is None


def test_dag_id_index() -> None:
    assert split_dag_id("contactsync__crm__customers") == ("crm", "customers")
    assert split_dag_id("contactsync__crm") is None
    assert split_dag_id("other__crm__customers") is None
    assert dag_id_of(definition_text()) == "contactsync__crm__customers"
    assert dag_id_of("integration: [") is None
    assert dag_id_of("integration: crm\nsource: 3\n") is None


def test_index_finds_names_written_with_escapes(tmp_path: Path) -> None:
    plain = write(tmp_path, "a.yaml", definition_text("other"))
    escaped = write(tmp_path, "b.yaml", definition_text().replace("name: customers", 'name: "\\x63ustomers"'))
    assert files_for_dag_id([plain, escaped], "contactsync__crm__customers") == [escaped]


# --- parse speed must not change what the loader reports ---------------------------------------


def test_formula_cache_key_keeps_the_fields_a_formula_names() -> None:
    fields = ["id", "email", "customer.email", "phone"]
    assert _fields_named_in("email.trim() + customer.email", fields) == ("email", "customer.email")
    assert _fields_named_in("'phone'", fields) == ("phone",)


def test_cached_formula_failure_still_suggests_from_every_field() -> None:
    good = definition_text()
    parse_definition(good)  # caches email.normalizeEmail() as valid against [email]
    renamed = good.replace("[id, email,", "[id, emial,").replace("  email: EMAIL", "  emial: EMAIL")
    with pytest.raises(Exception, match="unknown field 'email' \\(did you mean 'emial'\\?\\)"):
        parse_definition(renamed)


def test_libyaml_errors_keep_the_pure_python_wording() -> None:
    import yaml

    text = "integration: crm\nsource: [unclosed\n"
    with pytest.raises(yaml.YAMLError) as expected:
        yaml.compose(text, Loader=yaml.SafeLoader)
    with pytest.raises(Exception) as caught:
        parse_definition(text, file="crm.yaml")
    assert str(expected.value.problem) in str(caught.value)


def test_worker_does_not_recompile_formulas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "crm.yaml", definition_text().replace("email.normalizeEmail()", "email.normalizeEmal()"))
    with pytest.raises(ContactsyncDefinitionsError, match="unknown function 'normalizeEmal'"):
        load_dags(tmp_path, strict=True)  # the DAG processor reports it
    monkeypatch.setenv(PARSING_CONTEXT_ENV, "contactsync__crm__customers")
    assert list(load_dags(tmp_path)) == ["contactsync__crm__customers"]  # the transform task will fail
