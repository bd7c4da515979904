"""Where workers commit what they produce: the output folder or the bucket, from any process or machine.

A worker gets an :class:`OutputRef` (plain data, pickles to a thread, a Dask process or another
machine) and commits each finished part under a key that is the same on every attempt (run id
and batch number), exactly once: locally by hard link, on S3 by a conditional PUT. A second
attempt of the same work (Dask re-runs the tasks of a worker that died) finds the key committed
and does not pay for the API call again, or loses the commit race; both count as a duplicate
avoided, never as an error. When the worker runs on the machine of the run's single writer, it
also drops a copy into that writer's working copy of a bucket output, which saves a download.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from quant_batch.store import commit
from quant_batch.store.location import is_uri
from quant_batch.store.storage import Storage, StorageConfig, open_storage

_OPEN: dict[tuple[str, str], Storage] = {}
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class OutputRef:
    """An output as a worker sees it."""

    location: str
    """An absolute folder or a bucket URI."""
    storage: StorageConfig | None = None
    copy_to: str | None = None
    """The single writer's working copy of a bucket output, when the worker shares its machine."""

    @property
    def is_local(self) -> bool:
        return not is_uri(self.location)

    def open(self) -> OutputWriter:
        key = (self.location, _fingerprint(self.storage))
        with _OPEN_LOCK:  # one storage (and its S3 clients) per output per process
            storage = _OPEN.get(key)
            if storage is None:
                storage = _OPEN[key] = open_storage(self.location, self.storage)
        return OutputWriter(storage, Path(self.copy_to) if self.copy_to else None)


def _fingerprint(config: StorageConfig | None) -> str:
    """Tells settings apart, secrets included (``model_dump_json`` masks them), without keeping them as text."""
    if config is None:
        return ""

    def reveal(value: object) -> str:
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    return hashlib.sha256(json.dumps(config.model_dump(), default=reveal, sort_keys=True).encode()).hexdigest()


class OutputWriter:
    def __init__(self, storage: Storage, copy_to: Path | None):
        self.storage = storage
        self.copy_to = copy_to if not storage.is_local else None

    def committed(self, key: str) -> bool:
        """Whether ``key`` is already committed (check before paying for the work that makes it)."""
        return self.storage.is_committed(key)

    def commit(self, key: str, data: bytes) -> bool:
        """Commit ``data`` under ``key`` once; False: another attempt had (a duplicate avoided)."""
        won = self.storage.commit_once(key, data)
        if won and self.copy_to is not None:
            commit.link_once(self.copy_to / key, data)
        return won

    def replace(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key``, replacing what was there (images re-rendered under their name)."""
        self.storage.replace(key, data)
        if self.copy_to is not None:
            commit.replace_file(self.copy_to / key, data)

    def exists(self, key: str) -> bool:
        return self.storage.exists(key)

    def delete(self, key: str) -> bool:
        if self.copy_to is not None:
            (self.copy_to / key).unlink(missing_ok=True)
        return self.storage.delete(key)
