"""Safe writes: nothing already on disk is lost when a save fails half-way or the process is killed.

Every folder writer in the package writes into a temporary folder beside the target and publishes it
as a whole: files of the target that the writer does not produce are hard-linked into the temporary
folder (so a model and its tokenizer can share a folder), everything is fsync'ed, and the two folders
are swapped in one ``renameat2(RENAME_EXCHANGE)`` (Linux >= 3.15 on ext4, xfs, btrfs, tmpfs, ...), so a
reader sees either the old folder or the new one, and the target path never stops existing. Where the
exchange is unavailable (other systems or filesystems), files are moved into place one by one with
``os.replace`` (each atomic, the folder as a whole not). Single files go through a temporary sibling,
fsync and a rename, then the folder is fsync'ed so the rename itself survives a power loss.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@contextmanager
def staged_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success publish it as ``target`` (see the module docstring)."""
    target = real_target(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; give a folder path to save into.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_staging_dir(target)
    try:
        yield tmp
        replacing = target.exists() and not _holds_cwd(target)  # swapping a process's working folder
        if replacing:                                             # would leave it in the removed copy
            _link_missing(target, tmp)
        fsync_tree(tmp)
        if not target.exists():
            os.rename(tmp, target)
        elif not (replacing and exchange(tmp, target)):
            _move_tree(tmp, target)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange: the previous version


def real_target(target: str | os.PathLike) -> Path:
    """``target``, or the folder it links to: a swap must replace the folder, not the user's symlink."""
    target = Path(target)
    return target.resolve() if target.is_symlink() else target


def make_staging_dir(target: Path) -> Path:
    """A new empty ``.NAME.tmp-*`` folder beside ``target`` with the mode ``target`` has (or would get)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(tmp, target.stat().st_mode & 0o7777 if target.is_dir() else 0o777 & ~_umask())
    return tmp


def save_staged(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp_dir)`` and publish what it wrote into ``target`` (see ``staged_dir``)."""
    with staged_dir(target) as tmp:
        write(tmp)
    return Path(target)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write one file through a temporary sibling, fsync and a rename (then fsync the folder).

    The file gets the permissions a plain ``open(path, "w")`` would give it (0666 less the umask; an existing
    file keeps its own), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.is_file() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (renameat2 RENAME_EXCHANGE); False where the system cannot."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"Could not swap {a} and {b}: {os.strerror(err)}")


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the entries of a folder (renames, new files) durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file and folder under ``root`` (files first, each folder after its entries)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                fsync_file(path)
        fsync_dir(folder)


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _holds_cwd(target: Path) -> bool:
    try:
        return Path.cwd().resolve().is_relative_to(target.resolve())
    except OSError:
        return False


def _link_missing(src: Path, dst: Path) -> None:
    """Give ``dst`` every entry of ``src`` it lacks (hard links, or copies across filesystems), recursively."""
    for item in src.iterdir():
        target = dst / item.name
        if item.is_symlink():
            if not os.path.lexists(target):
                os.symlink(os.readlink(item), target)
        elif item.is_dir():
            if not os.path.lexists(target):
                target.mkdir()
            if target.is_dir() and not target.is_symlink():
                _link_missing(item, target)
        elif not os.path.lexists(target):
            try:
                os.link(item, target)
            except OSError:
                shutil.copy2(item, target)


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
    fsync_dir(dst)
