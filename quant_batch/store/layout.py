"""Where things live under an output folder.

    <out>/
      parts/vectors/<generation>/<run>-<batch>.parquet   embedded chunks, one file per API batch
      parts/images/<run>-<key>.parquet                   one file per rendered manifest row
      parts/errors/<run>-<n>.parquet                     per-record failures
      parts/enrich/<table>/<run>-<n>.parquet             chat enrichment answers, one table each
      runs/<run_id>.json                                 one summary per run
      state/live-<gen>-<run>.parquet                     the live chunks of a vector space, as one
      state/documents-<gen>-<run>.parquet                run published them (never rewritten)
      state/index-<gen>.json                             pointer to the published pair above,
                                                         replaced last: what readers read
      state/generation.json                              the vector space search uses (switched
                                                         only when a space is complete)
      catalog.duckdb                                     query surface, rebuilt from the files above
      <id>_<n>.png, index.html                           rendered images and their contact sheet

Everything except ``catalog.duckdb`` is durable truth; the catalog can be deleted and rebuilt.

A bucket output (``s3://bucket/prefix``) has the same keys in the bucket, which is the truth, and a
*working copy* on each machine that reads or publishes it (under the catalog cache folder, see
:func:`quant_batch.store.storage.catalog_cache_dir`): :meth:`Layout.pull` brings it up to date
(parts and published state files never change once written, so only new ones are fetched),
:meth:`Layout.push` sends what the run's single writer wrote, parts first and pointers last.
Every reader (catalog, search, plan, the web page) then reads local files, at local speed and
without DuckDB's ``httpfs`` (which an offline machine cannot install). Workers on other machines
write their parts straight to the bucket (:mod:`quant_batch.store.output`).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quant_batch.errors import InputError
from quant_batch.store.location import is_uri

if TYPE_CHECKING:
    from quant_batch.store.output import OutputRef
    from quant_batch.store.storage import Storage, StorageConfig

# what a working copy mirrors; plan files are the run's own scratch, the catalog is derived
_MIRRORED = ("parts/", "runs/", "state/")
_MUTABLE = ("runs/", "state/index-", "state/generation.json")
_DOWNLOAD_THREADS = 16


@dataclass(frozen=True)
class Layout:
    root: Path
    """The output folder, or the local working copy of a bucket output."""
    remote: Storage | None = field(default=None, compare=False)
    """The bucket (None: ``root`` is the output itself)."""

    @property
    def location(self) -> str:
        """The output as the user names it: the folder, or the bucket URI (no credentials)."""
        return self.remote.uri if self.remote is not None else str(self.root)

    def key(self, path: Path) -> str:
        """``path`` (under :attr:`root`) as a key of the output."""
        return Path(path).relative_to(self.root).as_posix()

    def push(self, path: Path, *, once: bool = False) -> bool:
        """Send the local file ``path`` to the bucket (no-op for a local output).

        ``once`` for files that never change (parts, published state): a key already there is a
        duplicate avoided (returns False); otherwise the object is replaced.
        """
        if self.remote is None:
            return True
        from quant_batch.store import commit

        if once:
            return commit.commit_file_once(self.remote, self.key(path), path)
        commit.replace_from_file(self.remote, self.key(path), path)
        return True

    def ref(self, *, beside: bool = True) -> OutputRef:
        """What a worker needs to commit into this output; ``beside``: it runs on this machine."""
        from quant_batch.store.output import OutputRef

        if self.remote is None:
            return OutputRef(str(self.root.absolute()))
        location, config = self.remote.reopen_args()
        return OutputRef(location, config, str(self.root) if beside else None)

    def fetch(self, keys: list[str]) -> list[Path]:
        """The local paths of ``keys``, fetching into the working copy those not here yet."""
        paths = [self.root / k for k in keys]
        if self.remote is not None:
            for key, path in zip(keys, paths, strict=True):
                if not path.exists():
                    self.remote.download(key, path)
        return paths

    def replace(self, path: Path, data: bytes) -> None:
        """Write a file that changes (a pointer, a summary) here and in the bucket.

        The bucket first: a reader on this machine that refreshes in between then fetches the
        new version, never puts the old one back over it.
        """
        if self.remote is not None:
            self.remote.replace(self.key(path), data)
        from quant_batch.store.commit import replace_file

        replace_file(path, data)

    def delete(self, path: Path) -> None:
        """Remove ``path`` here and in the bucket."""
        Path(path).unlink(missing_ok=True)
        if self.remote is not None:
            self.remote.delete(self.key(path))

    def pull(self, *, prune: bool = False) -> int:
        """Bring the working copy of a bucket output up to date; returns the files fetched.

        New parts and state files are fetched (they never change once written), run summaries
        and pointers when their size or time differ. ``prune`` (only under the output's lock)
        also deletes local files the bucket no longer has, such as superseded state versions.
        """
        if self.remote is None:
            return 0
        remote = self.remote.sizes()
        todo = []
        for key, (size, mtime_ns) in remote.items():
            if not key.startswith(_MIRRORED) or key.startswith("state/plan-") or "/." in f"/{key}":
                continue
            try:
                st = (self.root / key).stat()
            except FileNotFoundError:
                todo.append((key, mtime_ns))
                continue
            if st.st_size != size or (key.startswith(_MUTABLE) and st.st_mtime_ns != mtime_ns):
                todo.append((key, mtime_ns))

        def fetch(item: tuple[str, int]) -> None:
            key, mtime_ns = item
            self.remote.download(key, self.root / key)  # type: ignore[union-attr]
            if mtime_ns:
                os.utime(self.root / key, ns=(mtime_ns, mtime_ns))

        with ThreadPoolExecutor(min(_DOWNLOAD_THREADS, max(1, len(todo)))) as pool:
            list(pool.map(fetch, todo))
        if prune:
            for folder in (self.parts, self.runs, self.state):
                for path in folder.rglob("*") if folder.exists() else ():
                    key = self.key(path)
                    if path.is_file() and key not in remote and not path.name.startswith((".", "plan-")):
                        path.unlink()
        return len(todo)

    @property
    def parts(self) -> Path:
        return self.root / "parts"

    def vector_parts(self, generation: str) -> Path:
        return self.parts / "vectors" / generation

    @staticmethod
    def vector_part_key(generation: str, run_id: str, batch: int) -> str:
        """The same key on every attempt of a batch: what makes its commit exactly-once."""
        return f"parts/vectors/{generation}/{run_id}-{batch:06d}.parquet"

    @staticmethod
    def error_part_key(name: str) -> str:
        return f"parts/errors/{name}.parquet"

    @property
    def image_parts(self) -> Path:
        return self.parts / "images"

    def enrich_parts(self, table: str) -> Path:
        return self.parts / "enrich" / table

    @property
    def error_parts(self) -> Path:
        return self.parts / "errors"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def index_pointer(self, generation: str) -> Path:
        return self.state / f"index-{generation}.json"

    def published(self, generation: str) -> dict[str, str] | None:
        """File names of the published live index of ``generation`` (None before the first publish).

        Indexes written before pointers existed have fixed names; they are read as they are
        until their next publish writes a pointer.
        """
        try:
            pointer: dict[str, str] = json.loads(self.index_pointer(generation).read_text())
            return pointer
        except FileNotFoundError:
            pass
        legacy = self.state / f"live-{generation}.parquet"
        if legacy.exists():
            return {"live": legacy.name, "documents": f"documents-{generation}.parquet"}
        return None

    def live(self, generation: str) -> Path:
        """The published live chunks of ``generation`` (a path that does not exist before any)."""
        pub = self.published(generation)
        return self.state / (pub["live"] if pub else f"live-{generation}.parquet")

    def documents(self, generation: str) -> Path:
        """The published documents of ``generation`` (a path that does not exist before any)."""
        pub = self.published(generation)
        return self.state / (pub["documents"] if pub else f"documents-{generation}.parquet")

    @property
    def generation(self) -> Path:
        return self.state / "generation.json"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    def active_generation(self) -> dict[str, Any] | None:
        """The vector space search uses (model, dimensions, normalize), or None before any."""
        if not self.generation.exists():
            return None
        active: dict[str, Any] = json.loads(self.generation.read_text())
        return active

    def holds_output(self) -> bool:
        """True once any run wrote here: a run summary or a Parquet part."""
        return any(self.runs.glob("*.json")) or any(self.parts.rglob("*.parquet"))

    def require_output(self) -> Layout:
        """This layout, or an InputError when the folder holds no quant-batch output (a typo'd path)."""
        if not self.holds_output():
            missing = self.remote is None and not self.root.exists()  # a bucket prefix has no "missing"
            what = "does not exist" if missing else "holds no quant-batch output (no runs/, no parts/)"
            raise InputError(f"{what}; pass the output folder of an embed or render run", path=self.location)
        return self


def open_output(location: str | Path, storage: StorageConfig | None = None, *, pull: bool = False) -> Layout:
    """The :class:`Layout` of a local output folder or a bucket output (with its working copy).

    ``pull`` brings a bucket output's working copy up to date first (what a reader wants).
    """
    if not is_uri(location):
        return Layout(Path(location))
    from quant_batch.store.storage import catalog_cache_dir, open_storage

    remote = open_storage(str(location), storage)
    layout = Layout(catalog_cache_dir(remote, storage), remote)
    if pull:
        layout.pull()
    return layout
