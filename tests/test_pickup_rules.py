"""Pickup rules without a server: which files are new, ready or unchanged, and the sensor's verdict."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_contactsync.core.spec.models import FileReadiness, SourceDefinition
from airflow_provider_contactsync.sources.files import FileInfo
from airflow_provider_contactsync.sources.pickup import WAIT_MARKER, WAIT_STABLE, select_files


def never(_: FileInfo) -> str:
    raise AssertionError("no checksum should be needed")


def test_new_changed_and_unchanged_files() -> None:
    files = [FileInfo("/in/b.csv", 10, 200.0), FileInfo("/in/a.csv", 10, 100.0), FileInfo("/in/c.csv", 5, 50.0)]
    imported = {"/in/c.csv": {"size": 5, "mtime": 50.0, "sha256": "x"}, "/in/b.csv": {"size": 9, "mtime": 200.0}}

    selection, seen = select_files(files, [], FileReadiness(), imported, {}, 1000.0, checksum=never)

    assert [f.name for f in selection.ready] == ["a.csv", "b.csv"]  # oldest first; b changed size
    assert selection.unchanged == 1
    assert set(seen) == {"/in/a.csv", "/in/b.csv"}


def test_touched_file_with_the_same_content_is_not_imported_again() -> None:
    file = FileInfo("/in/a.csv", 3, 300.0)
    digest = hashlib.sha256(b"abc").hexdigest()
    imported = {"/in/a.csv": {"size": 3, "mtime": 100.0, "sha256": digest}}

    same, _ = select_files([file], [], FileReadiness(), imported, {}, 1000.0, checksum=lambda f: digest)
    other, _ = select_files([file], [], FileReadiness(), imported, {}, 1000.0, checksum=lambda f: "different")

    assert (same.ready, same.unchanged, same.touched["/in/a.csv"]["mtime"]) == ([], 1, 300.0)
    assert other.ready == [file]


def test_stable_seconds_needs_the_same_size_across_checks_far_enough_apart() -> None:
    rules = FileReadiness(stable_seconds=60)
    growing = FileInfo("/in/a.csv", 10, 100.0)

    first, seen = select_files([growing], [], rules, {}, {}, 1000.0, checksum=never)
    soon, seen = select_files([growing], [], rules, {}, seen, 1030.0, checksum=never)
    grown, seen = select_files([FileInfo("/in/a.csv", 20, 110.0)], [], rules, {}, seen, 1070.0, checksum=never)
    later, _ = select_files([FileInfo("/in/a.csv", 20, 110.0)], [], rules, {}, seen, 1130.0, checksum=never)

    assert [s.waiting for s in (first, soon, grown)] == [{WAIT_STABLE: 1}] * 3
    assert [f.size for f in later.ready] == [20]


def test_done_marker_by_stem_and_markers_are_never_files() -> None:
    rules = FileReadiness(done_marker="{stem}.ok")
    files = [FileInfo("/in/a.csv", 1, 1.0), FileInfo("/in/b.csv", 1, 2.0), FileInfo("/in/a.ok", 0, 3.0)]
    markers = [FileInfo("/in/a.ok", 0, 3.0)]

    selection, _ = select_files(files, markers, rules, {}, {}, 10.0, checksum=never)

    assert [f.name for f in selection.ready] == ["a.csv"]
    assert selection.waiting == {WAIT_MARKER: 1}


@pytest.mark.parametrize(
    ("marker", "says"),
    [
        ("{name:>999999999}.done", "{name:>999999999}"),  # formatting it would take gigabytes
        ("{name.__class__}.done", "{name.__class__}"),  # formatting it would reach attributes
        ("{name!r}.done", "{name!r}"),
        ("{0}{name}.done", "{0}"),
    ],
)
def test_a_done_marker_is_parsed_never_formatted_to_be_checked(marker: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"only \{name\} and \{stem\} can be used") as caught:
        FileReadiness(done_marker=marker)
    assert f"found {says}" in str(caught.value)
    assert FileReadiness(done_marker="{{x}}{name}.done").done_marker == "{{x}}{name}.done"


@pytest.mark.parametrize("pattern", ["../x/*.csv", "/etc/*", "a/../../b.csv"])
def test_patterns_cannot_leave_the_folder(pattern: str) -> None:
    with pytest.raises(ValueError, match="must stay inside the folder"):
        SourceDefinition.model_validate(
            {
                "integration": "x",
                "source": {"name": "s", "type": "sftp", "conn_id": "c", "pattern": pattern, "fields": ["email"]},
                "mapping": {"email": "EMAIL"},
                "destination": {"list_ids": [2]},
            }
        )


class _Accessor:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def test_sensor_pokes_until_a_ready_file_and_records_what_it_saw(tmp_path: Path) -> None:
    from airflow_provider_contactsync.sensors import ContactsyncNewFileSensor

    definition = SourceDefinition.model_validate(
        {
            "integration": "x",
            "source": {
                "name": "s",
                "type": "file",
                "path": str(tmp_path),
                "fields": ["email"],
                "ready": {"stable_seconds": 0},
                "wait_for_file": {"poke_interval_seconds": 1, "timeout_seconds": 10},
            },
            "mapping": {"email": "EMAIL"},
            "destination": {"list_ids": [2]},
        }
    )
    sensor = ContactsyncNewFileSensor(task_id="wait", definition=definition.model_dump(mode="json"))
    accessor = _Accessor()
    context = {"asset_state_store": {sensor.asset: accessor}}
    assert sensor.mode == "reschedule" and sensor.soft_fail  # no worker slot held; a timeout skips

    assert sensor.poke(context) is False  # empty folder
    (tmp_path / "a.csv").write_text("email\na@x.io\n")
    assert sensor.poke(context) is False  # first sight of the file
    assert list(accessor.data["files_seen"]) == [str(tmp_path / "a.csv")]
    assert sensor.poke(context) is True  # unchanged since: ready


def test_archive_folder_under_a_relative_path_is_not_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_contactsync.core.spec.models import FileSource
    from airflow_provider_contactsync.sources.files import FilesSource

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in" / "done").mkdir(parents=True)
    (tmp_path / "in" / "a.csv").write_text("email\n")
    (tmp_path / "in" / "done" / "old.csv").write_text("email\n")
    spec = FileSource(
        type="file", name="s", path="in", recursive=True, fields=["email"], after_import="archive", archive_path="done"
    )

    assert [Path(f.path).as_posix() for f in FilesSource(spec).files()] == ["in/a.csv"]


def test_a_name_whose_bytes_are_not_utf8_is_recorded_in_a_form_json_takes_and_reverses() -> None:
    """``caf\\xe9.csv`` lists as ``caf\\udce9.csv``: no JSON store takes it, so state keys use its portable form."""
    import json

    from airflow_provider_contactsync.sources.file_names import display_name, native_path, portable_path

    name = b"/in/caf\xe9.csv".decode("utf-8", "surrogateescape")
    file = FileInfo(name, 3, 100.0)

    selection, seen = select_files([file], [], FileReadiness(), {}, {}, 1000.0, checksum=never)
    (key,) = seen
    json.dumps(seen).encode("utf-8")  # what the state store does with it
    assert selection.ready == [file] and native_path(key) == name and key != name
    imported = {key: {"size": 3, "mtime": 100.0}}
    again, _ = select_files([file], [], FileReadiness(), imported, {}, 2000.0, checksum=never)
    assert (again.ready, again.unchanged) == ([], 1)
    assert display_name(file.name) == "caf\\xe9.csv"
    assert portable_path("/in/café.csv") == native_path("/in/café.csv") == "/in/café.csv"
