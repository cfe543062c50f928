"""``contactsync``: check definitions and dry-run them on sample rows, without Airflow running.

Kept free of Airflow imports (unless ``--check-brevo`` asks for a connection) so it starts fast
enough for editors, pre-commit hooks and CI.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_provider_contactsync.core.attributes import AttributeCatalog
from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.mapping import ContactMapper, to_import_item
from airflow_provider_contactsync.core.pipeline import ContactPipeline
from airflow_provider_contactsync.core.rows import read_rows
from airflow_provider_contactsync.core.spec import (
    FileSource,
    SourceDefinition,
    iter_definition_files,
    load_definition,
)
from airflow_provider_contactsync.core.spec.loader import DefinitionReport, inspect_definition_file
from airflow_provider_contactsync.core.sync_rules import SYNC_KEY
from airflow_provider_contactsync.load.identity import RunRow, identity_of, ids_of
from airflow_provider_contactsync.load.preflight import find_conflicts

PREVIEW_FLUSH_EVERY = 2000


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `contactsync preview ... | head`
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contactsync", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check definition files (exit 1 on any error)")
    validate.add_argument("paths", nargs="+", type=Path, help="definition files or folders of them")
    _catalog_options(validate)
    validate.add_argument(
        "--check-source",
        action="store_true",
        help="connect to each source (Airflow connections), list its files or columns and check `fields`",
    )
    validate.set_defaults(run=_validate)

    preview = commands.add_parser("preview", help="dry-run transform and mapping over sample rows")
    preview.add_argument("definition", type=Path, help="the source definition (YAML)")
    preview.add_argument("--rows", type=Path, required=True, help="CSV or JSON lines file of source rows")
    preview.add_argument("--format", choices=("csv", "jsonl"), help="rows file format (default: by extension)")
    preview.add_argument("--limit", type=int, default=None, help="stop after N rows")
    _catalog_options(preview)
    preview.set_defaults(run=_preview)

    demo = commands.add_parser("demo", help="run the end-to-end demo sync against a local Brevo sandbox")
    demo.add_argument("--workdir", type=Path, default=Path(".contactsync-demo"), help="where state is kept")
    demo.add_argument("--fresh", action="store_true", help="forget the previous demo state first")
    demo.set_defaults(run=_demo)

    schema = commands.add_parser("schema", help="print the JSON Schema of definition files")
    schema.add_argument("--markdown", action="store_true", help="print the Markdown reference instead")
    schema.add_argument("--export", action="store_true", help="export definitions' (kind: export) instead")
    schema.set_defaults(run=_schema)
    return parser


def _catalog_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--attributes", type=Path, help="JSON answer of GET /contacts/attributes to check the mapping against"
    )
    group.add_argument(
        "--check-brevo",
        action="store_true",
        help="fetch attributes through the definition's Brevo connection",
    )


def _validate(args: argparse.Namespace) -> int:
    files: list[Path] = []
    for path in args.paths:
        found = iter_definition_files(path) if path.is_dir() else [path]
        if not found:
            print(f"error: {path}: no definition files (*.yaml, *.yml)", file=sys.stderr)
            return 1
        files += found
    failed = 0
    for file in files:
        report = inspect_definition_file(file)  # every problem of the file, not only the first
        errors = report.errors + _account_errors(args, report)
        definition = None if errors else report.definition
        if definition is not None and args.check_source and getattr(definition, "kind", None) != "export":
            try:
                _check_source(definition)
            except ConfigurationError as exc:
                errors.append(exc)
        if definition is None or errors:
            failed += 1
            for error in errors:
                print(f"error: {error if error.file else error.located(file=str(file))}", file=sys.stderr)
            continue
        print(f"ok: {file} ({definition.dag_id})")
    print(f"{len(files) - failed} valid, {failed} invalid", file=sys.stderr)
    return 1 if failed else 0


def _account_errors(args: argparse.Namespace, report: DefinitionReport) -> list[ConfigurationError]:
    """With --attributes or --check-brevo: the mapping's problems with the account, each at its line.

    Checked as far as the file allows, so they come with the file's other problems.
    """
    if not (args.attributes or args.check_brevo):
        return []
    view = report.mapping_view()
    if view is None or (args.check_brevo and report.destination_conn_id() is None):
        return []  # no usable mapping entry, or no usable connection: their own errors say why
    try:
        catalog = _catalog(args, view)
        assert catalog is not None
        ContactMapper(view, catalog, report.result_types())
    except ConfigurationError as exc:
        return [report.locate(error) for error in getattr(exc, "errors", [exc])]
    return []


_TABLES_SHOWN = 50


def _check_source(definition: SourceDefinition) -> None:
    """Print what the source offers (files and their columns, or columns) and check ``fields`` against it."""
    from airflow_provider_contactsync.sources import open_source
    from airflow_provider_contactsync.sources.files import FilesSource

    source = open_source(definition.source)
    if definition.source.type == "events":  # the queue's keys and default table name the integration
        source.integration = definition.integration  # type: ignore[attr-defined]
    reachable, message = source.test_connection()
    if not reachable:
        raise ConfigurationError(message)
    tables = source.list_tables()
    if tables:
        shown = ", ".join(tables[:_TABLES_SHOWN]) + (
            f", ... ({len(tables)} in all)" if len(tables) > _TABLES_SHOWN else ""
        )
        print(f"  {source.tables_word}: {shown}")
    if isinstance(source, FilesSource):
        for info, columns in source.describe_files():
            print(f"  file {info.path} ({info.size} bytes): {columns}")
    columns = source.discover()
    print(f"  columns: {', '.join(columns)}")
    if definition.source.type == "salesforce":  # describe knows more: formula fields cannot be matched
        source.check_fields()  # type: ignore[attr-defined]
    missing = [f for f in definition.source.fields if f not in columns and f.split(".")[0] not in columns]
    if missing:
        raise ConfigurationError(f"fields {missing} are not in the source (it has {columns})", key_path="source.fields")


def _preview(args: argparse.Namespace) -> int:
    definition = load_definition(args.definition)
    catalog = _catalog(args, definition)
    if catalog is None:
        catalog = _assumed_catalog(definition)
    pipeline = ContactPipeline(definition, catalog)
    keyed = definition.source.key is not None
    fmt = args.format or ("jsonl" if args.rows.suffix in (".jsonl", ".ndjson", ".json") else "csv")
    csv_options = definition.source.csv if isinstance(definition.source, FileSource) else None
    rows = read_rows(args.rows, format=fmt, fields=definition.source.fields, csv_options=csv_options)
    if args.limit is not None:
        rows = itertools.islice(rows, args.limit)
    counts = {"ok": 0, "rejected": 0, "skipped": 0, "deleted": 0}
    out = sys.stdout
    with tempfile.TemporaryFile("w+", encoding="utf-8") as pending:
        # Two passes: a row can lose to a newer row sharing its email (the load's pre-flight check),
        # so records wait on disk (constant memory) until the whole sample has been seen.
        run_rows = []
        for outcome in pipeline.process(rows):
            contact = dict(outcome.contact or {})
            intent = contact.pop(SYNC_KEY, None)
            record: dict[str, Any] = {
                "row": outcome.index,
                "status": "ok" if outcome.ok else "rejected",
                "contact": contact,
                "errors": [{"field": r.field, "value": r.value, "reason": r.reason} for r in outcome.rejects],
            }
            if intent:  # what the sync rules say beyond the attributes (lists, consent, a soft delete)
                record["sync"] = intent
                if intent.get("delete"):
                    record["status"] = "deleted"
                    record["note"] = "deleted in the source: removed as deletes.behavior says, if this source owns it"
            if outcome.ok:
                ids = ids_of(to_import_item(outcome.contact or {}))
                run_rows.append(RunRow(outcome.index, outcome.key, identity_of(ids, outcome.key, keyed=keyed), ids))
            pending.write(_json_line(record))
        verdicts = {v.seq: v for v in find_conflicts(run_rows)}
        pending.seek(0)
        buffer: list[str] = []
        for line in pending:
            record = json.loads(line)
            verdict = verdicts.get(record["row"])
            if verdict is not None:
                record["status"] = "skipped" if verdict.superseded else "rejected"
                field = None if verdict.kind == "KEY" else verdict.kind
                record["errors"] = [{"field": field, "value": verdict.value, "reason": verdict.reason}]
                line = _json_line(record)
            counts[record["status"]] += 1
            buffer.append(line)
            if len(buffer) >= PREVIEW_FLUSH_EVERY:
                out.write("".join(buffer))
                buffer.clear()
        if buffer:
            out.write("".join(buffer))
    out.flush()
    print(
        f"{sum(counts.values())} rows: {counts['ok']} ok, {counts['rejected']} rejected, "
        f"{counts['skipped']} skipped (superseded by a newer row of the same contact)"
        + (f", {counts['deleted']} deleted in the source (removed by a run)" if counts["deleted"] else ""),
        file=sys.stderr,
    )
    return 0


def _json_line(record: dict[str, Any]) -> str:
    """One preview record as a JSON line; text no encoding can write (a lone surrogate) is escaped."""
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(record, default=str) + "\n"
    return line


def _demo(args: argparse.Namespace) -> int:
    from airflow_provider_contactsync.demo import run_demo

    run_demo(args.workdir, fresh=args.fresh)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from airflow_provider_contactsync.core.spec.schema import (
        export_json_schema_text,
        json_schema_text,
        render_export_reference,
        render_reference,
    )

    if args.export:
        sys.stdout.write(render_export_reference() if args.markdown else export_json_schema_text())
        return 0

    sys.stdout.write(render_reference() if args.markdown else json_schema_text())
    return 0


def _catalog(args: argparse.Namespace, definition: SourceDefinition) -> AttributeCatalog | None:
    if args.attributes:
        data = json.loads(args.attributes.read_text(encoding="utf-8"))
        return AttributeCatalog.from_api(data["attributes"] if isinstance(data, dict) else data)
    if args.check_brevo:
        from airflow_provider_contactsync.hooks.brevo import BrevoHook

        return AttributeCatalog.from_api(BrevoHook(definition.destination.conn_id).get_attributes())
    return None


def _assumed_catalog(definition: SourceDefinition) -> AttributeCatalog:
    """Without an account, check identifiers and Brevo's default attributes; take others as text."""
    from airflow_provider_contactsync.core.attributes import Attribute

    defaults = AttributeCatalog.brevo_defaults()
    assumed = [defaults.get(name) or Attribute(name, "text") for name in definition.mapping.values()]
    unknown = sorted(name for name in definition.mapping.values() if defaults.get(name) is None)
    if unknown and unknown != ["EMAIL"]:
        print(
            f"note: {', '.join(n for n in unknown if n != 'EMAIL')} checked as text; "
            "pass --attributes or --check-brevo to check them against the account",
            file=sys.stderr,
        )
    return AttributeCatalog([a for a in assumed if a is not None])


if __name__ == "__main__":
    sys.exit(main())
