"""One run per workdir: a lock file that names its holder.

Two runs in one workdir used to both exit 0 with their SIDs, losses and metrics.jsonl
interleaved. `workdir_lock` writes workdir/.sidjax.lock (host, pid, start time) with an
exclusive create; a second run is refused with a message naming the holder. A lock left
by a dead process on this host (kill -9, a crash) is reported and taken over; a lock from
another host cannot be checked, so the message says how to remove it. Re-entrant within a
process (the pipeline runs its stages through the same entry point), and only process 0
of a multi-process run takes it (all processes share the workdir).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time

from absl import logging

LOCK_NAME = ".sidjax.lock"
_held: dict[str, int] = {}  # Lock path -> nesting depth, for this process.


class WorkdirError(RuntimeError):
    """The workdir cannot be used (not writable, a file, locked)."""


class WorkdirLocked(WorkdirError):
    """Another live run holds the workdir."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _create(path: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
    return True


def _try_create(workdir: str, path: str) -> bool:
    try:
        os.makedirs(workdir, exist_ok=True)
        return _create(path)
    except FileExistsError:
        return False
    except OSError as e:
        raise WorkdirError(f"Workdir {workdir} cannot be written ({e.strerror}: "
                           f"{e.filename or workdir}); pass a writable --workdir.") from e


LOW_SPACE_BYTES = 2 << 30


def _warn_if_low_space(workdir: str) -> None:
    free = shutil.disk_usage(workdir).free
    if free < LOW_SPACE_BYTES:
        logging.warning("Workdir %s: only %.2f GiB free; checkpoints and exports may not fit "
                        "(a failed save stops the run, keeping the last good checkpoint).",
                        workdir, free / 2**30)


def acquire(workdir: str) -> str:
    """Takes the lock (or raises WorkdirLocked / WorkdirError); returns the lock path."""
    path = os.path.join(workdir, LOCK_NAME)
    if _held.get(path):
        _held[path] += 1
        return path
    for _ in range(2):
        if _try_create(workdir, path):
            _held[path] = 1
            _warn_if_low_space(workdir)
            return path
        holder = _read(path)
        host, pid = holder.get("host", "?"), int(holder.get("pid", -1) or -1)
        if host == socket.gethostname() and (pid <= 0 or not _alive(pid)):
            logging.warning("Workdir %s: removing a stale lock left by process %s (started "
                            "%s), which is no longer running.", workdir, pid,
                            holder.get("started", "?"))
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        raise WorkdirLocked(
            f"Workdir {workdir} is in use by process {pid} on {host} (started "
            f"{holder.get('started', '?')}; lock file {path}). Wait for it, use another "
            f"--workdir, or delete {path} if that run is gone.")
    raise WorkdirLocked(f"Workdir {workdir}: could not take the lock {path}; another run "
                        "keeps creating it.")


def release(path: str) -> None:
    depth = _held.get(path, 0) - 1
    if depth > 0:
        _held[path] = depth
        return
    _held.pop(path, None)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


@contextlib.contextmanager
def workdir_lock(workdir: str, take: bool = True):
    """Holds the workdir's lock for the block (`take=False`: a no-op, e.g. processes > 0)."""
    if not take:
        yield
        return
    path = acquire(workdir)
    try:
        yield
    finally:
        release(path)
