"""Atomic writes: write to a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import math
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from enum import Enum
from pathlib import Path, PurePath
from typing import Any

from alexbench.errors import InputError, NoSpaceError

# A write that failed for want of space: a full disk, a quota, a file-size limit (/dev/full).
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename onto the target on success.

    On any exception the temporary file is removed, so no half-written artifact is left behind.
    """
    target = Path(path)
    # The name is chosen before the file exists, so that wherever a signal (SIGINT/SIGTERM
    # raised as an exception) lands, the cleanup below knows what to remove. The real suffix
    # stays last: some writers (torch.export.save) check it.
    tmp = target.parent / f".{target.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{target.suffix}"
    ours = True  # False only if the name was somebody else's file: never remove that
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError as e:
            ours = False
            raise InputError(f"cannot write to {target.parent}: {tmp.name} exists") from e
        except OSError as e:
            raise InputError(f"cannot write to {target.parent}: {e.strerror or e}") from e
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())  # created 0600; give the file normal permissions
            os.replace(tmp, target)
        except OSError as e:
            if e.errno not in NO_SPACE:
                raise
            # A full disk is the machine's state, not a bug: one line naming the file (it
            # surfaced as "unexpected OSError" naming nothing, after a whole evaluation).
            raise NoSpaceError(target, e) from e
    except BaseException:
        if ours:
            with contextlib.suppress(OSError):  # absent, or its folder never came to be
                tmp.unlink()
        raise


def is_int(v: Any) -> bool:
    """An integer read from JSON or a checkpoint (true/false are not: bool is an int subclass)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """An int or float read from JSON or a checkpoint, not a bool (NaN and inf included)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def jsonable(obj: Any) -> Any:
    """`obj` as plain JSON values: enums as their values, dataclasses as dicts, paths as strings,
    numpy scalars and arrays as numbers and lists, and NaN or infinity as None (JSON has none)."""
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {_json_key(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return jsonable(obj.tolist())
    return str(obj)  # anything else json cannot write, as its text


def _json_key(key: Any) -> str:
    key = key.value if isinstance(key, Enum) else key
    return key if isinstance(key, str) else json.dumps(jsonable(key))


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document in `path`. A document nested deeper than Python's recursion limit
    (`[[[[...]]]]`, 100 KB is enough) raises ValueError like any other malformed JSON, not
    RecursionError, so every reader reports it as a bad file in one line."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Strict JSON (every reader parses it): NaN and infinity are written as null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def stale_temporaries(directory: Path, names: Iterable[str]) -> list[Path]:
    """The temporaries `atomic_path` names for these files in `directory`: those a killed
    (SIGKILL, power loss) writer left behind. Call it only with the folder locked, so that no
    live writer's file is among them."""
    found: list[Path] = []
    for name in names:
        stem, suffix = Path(name).stem, Path(name).suffix
        found += [p for p in directory.glob(f".{stem}.*.tmp{suffix}") if p.is_file()]
    return found


def not_a_folder(path: Path) -> str:
    """Why `path`, which is not a directory, cannot be read as one: in the words of a message."""
    return "a file, not a directory" if path.exists() else "no such directory"


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest folder above it that exists (where a write there would land)."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def missing_folders(path: Path) -> list[Path]:
    """`path` and every folder above it that does not exist yet, deepest first: what writing
    there creates, and so what a failure before anything was written should remove again."""
    missing: list[Path] = []
    folder = path.absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove `folders` (deepest first, from `missing_folders`), stopping at the first that is
    not empty: a failed first write leaves no empty folder behind, and never removes a file."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote something), or already gone: keep the rest
            return


def require_free_space(directory: Path, need_bytes: int, what: str) -> None:
    """Refuse, in one line, to start writing `what` where the disk cannot hold it: torch's
    serializers abort the whole process (C++ terminate, exit 134) on a full disk, half-written
    file left behind, instead of raising."""
    existing = nearest_existing(Path(directory))
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return  # no answer from this filesystem: let the write itself report
    if free < need_bytes:
        raise InputError(
            f"not enough free disk space in {existing} for {what}: about "
            f"{need_bytes / 2**20:,.0f} MiB needed, {free / 2**20:,.0f} MiB free"
        )


LOCK_WAIT_S = 900.0  # an export of every format takes a few minutes on 2 cores


def _open_folder(directory: Path) -> int:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return os.open(directory, os.O_RDONLY)
    except OSError as e:
        raise InputError(f"{directory}: cannot use as a folder ({e.strerror or e})") from None


@contextlib.contextmanager
def folder_lock(
    directory: Path,
    on_wait: Callable[[], None] | None = None,
    timeout_s: float = LOCK_WAIT_S,
    *,
    busy: str | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (created if missing) for the block, so that two
    processes never write one artifact folder at once. A second process waits (calling
    `on_wait` once) and fails in one line after `timeout_s`; with `busy` it fails at once with
    that reason (a training run holds its folder for hours). The lock is flock(2) on the folder
    itself: no lock file is left behind, and a killed holder releases it."""
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        fd = _open_folder(directory)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if busy is not None:
                raise InputError(f"{directory}: {busy}") from None
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if time.monotonic() > deadline:
                raise InputError(
                    f"{directory}: another alexbench process has been writing it for "
                    f"{timeout_s:.0f} s; try again when it has finished"
                ) from None
            time.sleep(0.2)
            continue
        try:
            current = os.stat(directory).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder removed (or replaced) the folder meanwhile: lock the new one
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM wait until the block ends, then go to the handler that was in
    place. For torch's archive writers (torch.jit.save, torch.export.save into a file object):
    an interrupt raised inside their Python write callback left the C++ writer to finish the
    archive on a closed file in its destructor, and the process aborted (SIGABRT, exit 134,
    a native stack trace) instead of exiting 130 (an outside audit, 3 of 11 Ctrl-Cs)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; handlers can be set there only
        return
    pending: list[int] = []
    previous = {
        s: signal.signal(s, lambda n, _f: pending.append(n))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        if pending:  # also when the block raised (a full disk): the interrupt comes first
            signal.raise_signal(pending[0])
