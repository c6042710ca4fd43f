"""One training process per run folder: an advisory lock on ``<run>/.lock`` holding the owner's pid.

The lock is the kernel's (``fcntl.flock``), so it dies with its process: a run killed with
``kill -9`` or by a power cut leaves no stale lock to clean up, and the next ``--resume`` simply
takes it. The pid written into the file only names the owner in the message of a refused second
process. The file itself stays in the folder (empty when nobody holds it): deleting it on release
would let two processes lock two different files of the same name.

On platforms without ``fcntl`` (Windows) runs are not locked.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK = ".lock"


class RunLock:
    """``with RunLock(out_dir): ...`` holds the run folder's lock for the block; a second holder
    (another process, or another RunLock on the same folder) gets a ValueError naming the owner."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.path = Path(out_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (the folder must exist); ValueError if another process holds it."""
        if fcntl is None or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ValueError(
                f"{self.path.parent} is in use by another training process ({owner}); wait for it to finish "
                f"(or stop it) before training or resuming there, or choose another --out"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # no owner named once released
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
