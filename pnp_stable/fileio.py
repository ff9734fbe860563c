"""Reading and writing the package's files.

Output is atomic: a reader sees the old file or the complete new one, never half of one.

Every file the package writes (restored images, reports, plots, solver states, training
checkpoints, exported models, caches) goes through :func:`atomic_output`: the data is written to a
temporary file in the target's folder, which then replaces the target with ``os.replace`` (atomic
on POSIX and Windows within one file system). The temporary file gets the permissions a plain
``open()`` would have given the target under the current umask; ``tempfile.mkstemp`` alone creates
it readable by its owner only.

Torch files (models, checkpoints, solver states) are read with :func:`read_torch_file`, whose
failures are one short line instead of PyTorch's text.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import shutil
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["atomic_output", "atomic_write_bytes", "atomic_write_json", "destination_problem", "figure_format",
           "read_npy",
           "json_safe", "new_file_mode", "read_torch_file"]


def new_file_mode() -> int:
    """Permissions of a file created by ``open(path, "w")`` under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, make_parents: bool = False, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that go by the extension
    work); when the block ends normally it replaces ``path``, and on an exception it is removed and
    ``path`` is left as it was.

    Raises ValueError naming ``path`` (not the temporary file) when its folder does not exist
    (unless ``make_parents``), is not a folder, or cannot be written. ``sync`` flushes the data to
    disk before the rename, so that a crash cannot leave an empty file under the final name.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if make_parents:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create the folder of {target}: {exc.strerror or exc}") from None
    if not folder.exists():
        raise ValueError(f"output folder '{folder}' does not exist")
    if not folder.is_dir():
        raise ValueError(f"cannot write {target}: '{folder}' is not a folder")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=folder)
    except OSError as exc:
        raise ValueError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        if sync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a failed cleanup must not mask the original error
            tmp.unlink()
        reason = _write_failure(exc, folder)
        if reason is not None:  # a full disk is the user's to mend: one line naming the file
            raise ValueError(f"cannot write {target}: {reason}") from None
        raise


# errors of a write that the user mends (free space, a quota, a read-only or failing medium)
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


def _write_failure(exc: BaseException, folder: Path) -> str | None:
    """Why a write into ``folder`` failed, when the medium is the cause (else None): an OSError of
    :data:`_WRITE_ERRNOS`, or torch's serialiser failing (a RuntimeError of its stream writer,
    ``unexpected pos ...``, which is what a full disk gives ``torch.save`` to a file)."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return exc.strerror or str(exc)
    if isinstance(exc, RuntimeError) and any(mark in str(exc) for mark in ("PytorchStreamWriter", "inline_container",
                                                                          "unexpected pos")):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        full = free is not None and free < 1 << 20
        return "no space left on device" if full else f"the file could not be written ({str(exc).splitlines()[0]})"
    return None


@contextlib.contextmanager
def exclusive_use(path: str | os.PathLike, what: str) -> Iterator[bool]:
    """Hold ``path`` (a run folder, a checkpoint) for this process while the block runs: a second
    process asking for it fails at once with a one-line ValueError, instead of both writing the
    same files (two trainings in one run folder interleaved their logs and left the last writer's
    checkpoint). The lock is ``.<name>.lock`` beside ``path`` (its folder is created if need be):
    an advisory ``flock``, released by the system if the process dies, the file removed at the
    end. Yields whether the lock is held: not where the system has no ``flock`` (Windows), the
    folder cannot be written, or the file system does not lock (some network file systems), in
    which case nothing is refused either.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield False
        return
    target = Path(path)
    lock = target.parent / f".{target.name}.lock"
    for _ in range(8):
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError:  # not writable: the writes themselves will say so
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ValueError(f"{what} {target} is in use by another process (it holds {lock.name}); wait for "
                                 "it to end, or choose another") from None
            yield False  # ENOLCK, ENOSYS, EOPNOTSUPP: a file system without locks
            return
        # the holder before us removes the file as it ends: a lock on that unlinked file excludes
        # nobody who opens the path afresh, so it must be the file the path names now
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    else:  # pragma: no cover - eight holders ending in a row
        raise ValueError(f"{what} {target} is in use by other processes ({lock.name} keeps changing)")
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_output` left beside ``path`` when a process writing
    it was killed (``.<stem>.XXXXXXXX<suffix>``: a checkpoint-sized file each, never read again);
    returns them. Call it only while holding ``path``'s folder or file (:func:`exclusive_use`): a
    running writer's temporary file has the same name."""
    target = Path(path)
    if not target.parent.is_dir():
        return []
    removed = []
    for candidate in target.parent.glob(f".{glob.escape(target.stem)}.*{glob.escape(target.suffix)}"):
        middle = candidate.name[len(target.stem) + 2:len(candidate.name) - len(target.suffix)]
        if len(middle) == 8 and candidate.is_file():  # mkstemp's eight random characters
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes, make_parents: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, make_parents=make_parents) as tmp:
        tmp.write_bytes(data)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN or infinity; Python's
    ``json`` would write them as invalid tokens)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any, make_parents: bool = False,
                      default: Callable[[Any], Any] | None = None) -> None:
    """Write ``obj`` as indented JSON (non-finite floats as null) to ``path`` atomically; ``default``
    as in :func:`json.dumps` (e.g. ``str`` for a report that may hold paths)."""
    text = json.dumps(json_safe(obj), indent=2, default=default) + "\n"
    atomic_write_bytes(path, text.encode(), make_parents=make_parents)


def read_torch_file(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with failures as one short ``ValueError``.

    Guarantee: a missing file raises ``FileNotFoundError``; whatever else ``path`` holds, the only
    exception is a ValueError whose message is one line naming ``path``: ``cannot read PATH:
    <reason>`` when the file system refuses (permission, a directory), ``PATH is not WHAT (it could
    not be read as one)`` otherwise (random bytes, a truncated file, a pickle of something else).
    The caller checks the content it expects (format tag, keys) and says "not WHAT" itself for a
    readable file of the wrong kind.
    """
    import torch

    # torch warns of a pickle protocol other than its own (2) before failing on most such files:
    # never one of ours, and a second line before the one error that matters
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # torch's zip reader on a truncated file: the file, not the system
            raise ValueError(f"{os.fspath(path)} is not {what} (it could not be read as one: truncated or "
                             "damaged?)") from exc
        raise ValueError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign or corrupt files
        # Not str(exc): for any file that is not a weights-only pickle, PyTorch's text is a
        # multi-paragraph essay on its weights_only default and arbitrary code execution.
        raise ValueError(f"{os.fspath(path)} is not {what} (it could not be read as one)") from exc


def read_npy(path: str | os.PathLike, mmap: bool = False):
    """The array of a ``.npy`` file as stored (no scaling, no checks of its values; ``mmap``:
    memory-mapped read-only, read from disk only where indexed); ValueError
    naming the file when it cannot be read as one (no pickles; ``np.load`` also opens any zip
    archive, an ``.npz`` or a saved solver state, which is refused), FileNotFoundError when missing."""
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    if not path.is_file():  # a FIFO would be waited on forever; a folder gives a raw OSError
        raise ValueError(f"{path.name} is not a regular file (a folder, a pipe or a device?)")
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read {path.name} as a .npy array ({type(exc).__name__})") from None
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise ValueError(f"{path.name} is a zip archive (an .npz or a saved solver state), not a .npy array")
    return loaded


def figure_format(path: str | os.PathLike) -> str:
    """The matplotlib format named by ``path``'s suffix (``png``, ``pdf``, ``svg``, ``jpg`` ...).

    Figures are written through a temporary file whose name says nothing, so the format must come
    from the destination. ``ValueError`` naming the supported suffixes if there is none or
    matplotlib cannot write it: check a destination with it before the work, not after.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    supported = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in supported:
        what = f"a .{suffix} file" if suffix else "a file without a suffix"
        raise ValueError(f"{path}: cannot plot to {what}; use one of {', '.join('.' + s for s in sorted(supported))}")
    return suffix


def destination_problem(path: str | os.PathLike, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a folder) could not be written with its missing
    parent folders made, or None if it can: the words that follow the path in a one-line message
    (`` is a folder, not a file``, ``: PARENT is a file, not a folder``, ``: PARENT is not
    writable``). Checked before long work, so that it does not fail at its end."""
    target = Path(path)
    if target.exists() and target.is_dir() != folder:
        return f" is a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}"
    ancestor = target if folder and target.exists() else target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f": {ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f": {ancestor} is not writable"
    # os.access trusts the permission bits, which root passes everywhere, even on a read-only file
    # system (/sys, a read-only mount): only creating a file there tells for sure
    try:
        fd, probe = tempfile.mkstemp(prefix=".pnp-stable-probe.", dir=ancestor)
    except OSError as exc:
        return f": {ancestor} is not writable ({exc.strerror or exc})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    if not folder and target.is_file():
        return _replacement_problem(target, ancestor)
    return None


def _replacement_problem(target: Path, parent: Path) -> str | None:
    """Why an existing file could not be replaced by renaming a new one over it (what an atomic
    write does), or None: another user's file in a sticky folder (/tmp), or an immutable file
    (opening it for writing fails with EPERM; a read-only mode, EACCES, does not stop a rename in a
    writable folder). Opening it writes nothing."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None:
        folder_stat = os.stat(parent)
        if folder_stat.st_mode & stat.S_ISVTX and geteuid() not in (0, folder_stat.st_uid, target.stat().st_uid):
            return f": it belongs to another user in the sticky folder {parent}, so it cannot be replaced"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        if exc.errno == errno.EPERM:
            return f": the existing file cannot be replaced ({exc.strerror or exc})"
        return None
    os.close(fd)
    return None
