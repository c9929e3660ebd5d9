"""Publishing a knowledge base atomically: build in a temporary folder beside the target, then rename.

``staging(target)`` yields an empty folder in the target's parent; on success ``publish`` swaps it in:
the previous knowledge base is renamed aside, the new one renamed into place, the old one removed.
Both renames are atomic; if the process dies between them, ``recover(target)`` (run by every load and
build) puts the previous knowledge base back. On any error the staging folder is removed and the
previous knowledge base is untouched. Readers that memory-mapped the old files keep them until closed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staging(target: Path) -> Iterator[Path]:
    """Yield a fresh folder beside ``target``; publish it as ``target`` if the block succeeds."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; give a folder path for the knowledge base.")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(new: Path, target: Path) -> None:
    old = _aside(target)
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def recover(target: Path) -> None:
    """Undo a publish interrupted between its two renames."""
    old = _aside(target)
    if old.exists() and not target.exists():
        os.rename(old, target)
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _aside(target: Path) -> Path:
    return target.parent / f".{target.name}.old"
