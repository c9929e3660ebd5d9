"""Safe writes: nothing already on disk is lost when a save fails half-way.

Every writer in the package writes into a temporary folder beside the target and then moves each
finished file into place with ``os.replace`` (atomic on one filesystem). Files of the target folder
that the writer does not produce are left alone, so a model and its tokenizer can share a folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success move its files into ``target`` one by one, atomically each."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; give a folder path to save into.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _move_tree(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_staged(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp_dir)`` and publish what it wrote into ``target`` (see ``staged_dir``)."""
    with staged_dir(target) as tmp:
        write(tmp)
    return Path(target)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write one file through a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _move_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir():
            if target.exists() and not target.is_dir():
                target.unlink()
            _move_tree(item, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
