"""Export packaging (issue 16, item 4): file names from a template, gzip and zip, size and checksum."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import zipfile
from pathlib import Path

import pytest

from airflow_provider_contactsync.exports.packaging import file_name, pack

WHEN = dt.datetime(2026, 11, 27, 6, 30, tzinfo=dt.timezone.utc)


def test_file_names_from_the_template_with_the_compression_suffix() -> None:
    assert file_name("unsubscribes_{date:%Y%m%d}.csv", when=WHEN, name="u", compression="gzip") == (
        "unsubscribes_20261127.csv.gz"
    )
    assert file_name("{name}-{date}.csv", when=WHEN, name="optouts") == "optouts-2026-11-27.csv"


@pytest.mark.parametrize(
    "template", ["{date.__class__}.csv", "{name:>999999999}", "{os}.csv", "{date!r}", "../{date}.csv", "{", ""]
)
def test_templates_that_could_run_code_or_escape_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="file name template"):
        file_name(template, when=WHEN, name="x")


@pytest.mark.parametrize("compression", ["none", "gzip", "zip"])
def test_packing_keeps_the_bytes_and_reports_size_and_sha256(tmp_path: Path, compression: str) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(b"EMAIL,FIRSTNAME\n" + b"".join(b"c%d@example.com,N%d\n" % (n, n) for n in range(5000)))
    packed = pack(str(source), str(tmp_path / "out"), compression, member="export.csv")  # type: ignore[arg-type]
    data = Path(packed.path).read_bytes()
    assert packed.size == len(data) and packed.sha256 == hashlib.sha256(data).hexdigest()
    if compression == "gzip":
        assert gzip.decompress(data) == source.read_bytes()
    elif compression == "zip":
        with zipfile.ZipFile(packed.path) as archive:
            assert archive.namelist() == ["export.csv"] and archive.read("export.csv") == source.read_bytes()
    else:
        assert data == source.read_bytes()
