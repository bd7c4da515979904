"""One run at a time per output folder.

Workers may write part files concurrently, but planning, the ledger and the DuckDB catalog belong
to one run. An OS-level ``flock`` on ``<out>/.lock`` is released by the kernel when the holder
dies, so a run killed with ``kill -9`` never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from quant_batch.errors import LockError


class OutputLock:
    """Exclusive lock on an output folder; waits up to ``wait_seconds`` before failing."""

    def __init__(self, out_dir: Path, *, wait_seconds: float = 0.0, poll: float = 0.2):
        self.path = Path(out_dir) / ".lock"
        self.wait_seconds = wait_seconds
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise LockError(
                        f"{self.path.parent} is in use by another run ({holder}); wait for it to "
                        "finish or use another --out folder"
                    ) from None
                time.sleep(self.poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
