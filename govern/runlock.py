"""One process executes a run at a time.

A run killed with ``kill -9`` stays ``running`` in the lineage DB (nothing was left to record the end), so
``govern run --resume`` must accept a ``running`` run — and so, without more, it would also accept a run whose
process is alive: two processes would then train, gate and record the same run at once (one reusing what the
other is still writing). The process executing a run therefore holds an exclusive lock on a file in the run's
folder; the operating system drops it when the process ends, however it ends, so a killed run resumes and a
live one is refused with who holds it.

The lock is an ``flock`` through :mod:`filelock` (a well-kept library govern already depends on) rather than a
PID file of our own: a PID can be reused, and a lock the kernel releases cannot go stale.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from govern.errors import GovernError

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
#: Who holds the lock (written after taking it): named in the refusal, never trusted for the lock itself.
OWNER_FILE = "run.lock.owner.json"


class RunBusyError(GovernError):
    """Another live process is executing the run (its lock is held)."""


class RunLock:
    """The held lock of one run; :meth:`release` (or the process ending) lets another process resume it."""

    def __init__(self, lock: FileLock | None, run_dir: Path) -> None:
        self._lock, self.run_dir = lock, run_dir

    def release(self) -> None:
        if self._lock is not None and self._lock.is_locked:
            (self.run_dir / OWNER_FILE).unlink(missing_ok=True)
            self._lock.release(force=True)


def hold(run_dir: Path, run_id: str) -> RunLock:
    """Take the run's lock, or raise :class:`RunBusyError` naming the process that holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # thread_local=False: a session may end on another thread than it began. fallback_to_soft=False: filelock
    # would otherwise fall back, where the file system has no flock, to a lock file's mere existence, which a
    # killed process leaves behind; its run could then never be resumed.
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0, thread_local=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusyError(f"run {run_id} is being executed by another process{_owner(run_dir)}: wait for it to "
                           "end, or stop it, then resume (a killed process holds nothing)") from None
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
        log.warning("the file system of %s has no flock: run %s is executed without the guard against a second "
                    "process resuming it", run_dir, run_id)
        return RunLock(None, run_dir)
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}
    (run_dir / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    return RunLock(lock, run_dir)


def process_alive(run_dir: Path) -> bool | None:
    """Whether a live process holds the run's lock: False for a run left ``running`` by a killed process,
    None when this machine cannot tell (the folder is elsewhere, or the run predates the lock). Only reads:
    a shared ``flock`` probe on the existing file, released at once."""
    # By hand, not through filelock: its acquire creates the file and takes the lock exclusively, while a probe
    # from `govern runs list` must write nothing and hold its (shared) lock only for the instant it looks.
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except (OSError, ImportError):  # no flock here (or no fcntl: Windows): cannot tell
        return None
    finally:
        os.close(fd)  # closing drops the probe's own shared lock
    return False


def _owner(run_dir: Path) -> str:
    try:
        owner: Any = json.loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))
        return f" (pid {int(owner['pid'])} on {str(owner['host'])[:64]}, since {str(owner['since'])[:32]})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
