"""Publishing a knowledge base atomically, one writer at a time, with recovery after a kill.

A new version is written into a staging folder ``.NAME.tmp-*`` beside the target, fsync'ed file by
file and folder by folder, and swapped with the target in one ``renameat2(RENAME_EXCHANGE)``
(``ragmodels._io.exchange``): the path ``NAME`` never stops naming a complete knowledge base, and it
stays a plain folder, so knowledge bases written by earlier versions load and update unchanged, and
the reference's ``passages_path`` / ``index_path`` keep pointing at it. The previous version, now under
the staging name, is then removed. Where the exchange is unavailable, the previous knowledge base is
renamed aside to ``.NAME.old`` and the new one renamed into place; ``recover`` puts the old one back
if a kill falls between the two renames.

Two advisory locks (``fcntl.flock``) on files beside the target:
  - ``.NAME.lock``, held exclusively by every writer (``writer_lock``: builds' publishing step,
    updates from reading the current version to publishing the next), so concurrent updaters run one
    after the other and each applies to the version the previous one published. Whoever holds it may
    remove every staging folder (only a writer makes them, under this lock): ``recover`` does, so the
    folders a killed process left behind disappear at the next load, build or update.
  - ``.NAME.publish-lock``, held exclusively for the swap itself and shared while a load reads the
    manifest and maps the files (``reading``), so a load never mixes two versions.
The lock files stay (removing a lock file others may hold is unsafe) and are tiny. Writers create
them; loads never do (a shipped or read-only knowledge base gets no files beside it), so a load of a
knowledge base that no writer of this version has touched yet goes on without the shared lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragmodels._io import exchange, fsync_dir, fsync_tree, make_staging_dir, real_target

_locks: dict[str, list] = {}  # lock path -> [RLock, fd, depth]: this process's writer locks (reentrant)
_guard = threading.Lock()


@contextmanager
def staging(target: Path) -> Iterator[Path]:
    """Yield a fresh folder beside ``target``, under the writer lock; publish it as ``target`` on success."""
    target = real_target(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; give a folder path for the knowledge base.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(target):
        tmp = make_staging_dir(target)
        try:
            yield tmp
            publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def writer_lock(target: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold ``target``'s writer lock (reentrant within a process); yield whether it is held.

    On acquiring it, stale staging folders are removed and an interrupted fallback publish is undone.
    With ``blocking=False`` the block runs without the lock (yielding False) when another process has it.
    """
    target = real_target(target)
    key = str(_lock_path(target, "lock"))
    with _guard:
        entry = _locks.setdefault(key, [threading.RLock(), -1, 0])
    if not entry[0].acquire(blocking):  # another thread of this process writes
        yield False
        return
    try:
        if entry[2] == 0:
            fd = _open_lock(Path(key), create=True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                fd = -1
            if fd < 0:  # another process writes
                yield False
                return
            try:
                _clean(target)
            except BaseException:
                os.close(fd)
                raise
            entry[1] = fd
        entry[2] += 1
        try:
            yield True
        finally:
            entry[2] -= 1
            if entry[2] == 0:
                os.close(entry[1])  # releases the flock
    finally:
        entry[0].release()


@contextmanager
def reading(target: Path) -> Iterator[None]:
    """Hold ``target``'s publish lock shared: no version is swapped in while the block reads files."""
    try:
        fd = os.open(_lock_path(Path(target), "publish-lock"), os.O_RDONLY)
    except OSError:  # no lock file: nothing was ever published there by this version (loads create none)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def publish(new: Path, target: Path) -> None:
    """Swap the complete, fsync'ed folder ``new`` in as ``target``; remove the previous version."""
    fsync_tree(new)
    fd = _open_lock(_lock_path(target, "publish-lock"), create=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not target.exists():
            os.rename(new, target)
        elif not exchange(new, target):
            old = _aside(target)
            os.rename(target, old)
            os.rename(new, target)
            new = old
        fsync_dir(target.parent)
    finally:
        os.close(fd)
    shutil.rmtree(new, ignore_errors=True)  # the previous version (when there was one)


def recover(target: Path) -> None:
    """Remove what killed writers left beside ``target`` unless a writer is at work now (then it will)."""
    target = real_target(target)
    if not target.parent.is_dir() or not any(_leftovers(target)):
        return
    try:
        with writer_lock(target, blocking=False):
            pass  # acquiring it cleans
    except OSError:  # the lock file cannot be created (read-only folder): leave things as they are
        pass


def _clean(target: Path) -> None:
    """Under the writer lock: undo an interrupted fallback publish, remove stale staging folders."""
    old = _aside(target)
    if old.exists() and not target.exists():
        os.rename(old, target)
    for path in _leftovers(target):
        shutil.rmtree(path, ignore_errors=True)
    fsync_dir(target.parent)


def _leftovers(target: Path) -> Iterator[Path]:
    yield from (p for p in [_aside(target)] if p.exists())
    yield from target.parent.glob(f".{target.name}.tmp-*")


def _open_lock(path: Path, create: bool) -> int:
    return os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)


def _lock_path(target: Path, suffix: str) -> Path:
    target = real_target(target)  # a knowledge base reached through a symlink shares the folder's locks
    return target.parent / f".{target.name}.{suffix}"


def _aside(target: Path) -> Path:
    return target.parent / f".{target.name}.old"
