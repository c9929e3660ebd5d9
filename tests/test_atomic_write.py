"""atomic_write_bytes: the bytes land whole, with the permissions of an ordinary new file."""

from __future__ import annotations

import os

from ragmodels._io import atomic_write_bytes


def test_new_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "report.json", b"{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644  # readable by others, as `open` gives
    assert (tmp_path / "report.json").read_bytes() == b"{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "private.json"
    path.write_bytes(b"old")
    path.chmod(0o600)
    atomic_write_bytes(path, b"new")
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_bytes() == b"new"
