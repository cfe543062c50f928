"""State files outlive runs: a task killed while writing one leaves the previous file, never a cut one."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_contactsync.core.boundary import Boundary
from airflow_provider_contactsync.staging import write_private
from airflow_provider_contactsync.state import read_boundary, write_boundary


def test_a_write_cut_short_leaves_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state" / "cursor-boundary.json"
    write_private(str(target), b'{"old": true}')

    def killed(source: str, destination: str) -> None:  # the task dies after writing, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_private(str(target), b'{"new": true}')
    assert target.read_bytes() == b'{"old": true}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["cursor-boundary.json"]  # no partial file left


def test_a_written_file_is_whole_and_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.bin"
    write_private(str(target), b"x" * 100_000)
    write_private(str(target), b"short")
    assert target.read_bytes() == b"short"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def test_the_boundary_round_trips_through_an_atomic_write(tmp_path: Path) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/state/cursor-boundary.json")
    write_boundary(target, Boundary(42, {"k1": "d1"}))
    assert read_boundary(target) == Boundary(42, {"k1": "d1"})


@pytest.mark.parametrize("content", ["", '{"cursor": {"va'])
def test_a_cut_boundary_left_by_an_older_version_is_read_as_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    path = tmp_path / "cursor-boundary.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_contactsync.state"):
        assert read_boundary(ObjectStoragePath(f"file://{path}")) is None
    assert "unreadable" in caplog.text and str(path) in caplog.text
