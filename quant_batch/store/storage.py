"""Where outputs and sources live: a local folder or a bucket, behind one small ``Storage``.

``open_storage(location)`` takes ``/abs/path``, ``relative/path``, ``file:///path``,
``s3://bucket/prefix``, ``gs://bucket/prefix``, ``abfs[s]://container@account.dfs.core.windows.net/prefix``
or ``az://container/prefix`` (account from ``AZURE_STORAGE_ACCOUNT_NAME``) and returns a
:class:`Storage` whose keys are POSIX paths relative to that root (``parts/vectors/g1/r-1.parquet``).
Reading and listing go through ``pyarrow.fs``; writing goes through :mod:`quant_batch.store.commit`
(conditional PUT on S3, temp + fsync + link/rename locally).

S3 endpoint, region and credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL[_S3]``, ``AWS_REGION``,
``AWS_PROFILE`` and the shared config files) or an optional ``storage:`` block
(:class:`StorageConfig`), which wins. The endpoint is resolved here and handed to both pyarrow and
boto3, so the two clients can never talk to different servers. No credential reaches a repr, a log
line or an error message: errors name the URI and the service's error code only.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from quant_batch.errors import ConfigError, ObjectNotFound, StorageError
from quant_batch.store import commit
from quant_batch.store.s3 import CREDENTIALS_HINT, boto3_client, boto_message, endpoint, s3_filesystem
from quant_batch.store.storage_config import StorageConfig, redact

__all__ = ["Storage", "StorageConfig", "catalog_cache_dir", "glob_regex", "open_storage", "register_parquet"]

_PYARROW_AUTH_CODES = ("ACCESS_DENIED", "SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID", "MISSING_AUTHENTICATION")


def glob_regex(pattern: str) -> re.Pattern:
    """``**/`` = any number of directories, ``**`` = anything, ``*``/``?`` stay in one segment."""
    tokens = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    wild = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wild.get(t, re.escape(t)) for t in tokens))


def _check_key(key: str) -> str:
    if key.startswith("/") or "\\" in key or any(p in ("..", ".") for p in key.split("/")):
        raise ValueError(f"storage keys are relative POSIX paths without '..': {key!r}")
    return key.strip("/")


class Storage:
    """A root folder or bucket prefix: read, list and commit files by key.

    Build one with :func:`open_storage`. Picklable (it is rebuilt from its location and config on
    the other side, e.g. a Dask worker) and safe to share between threads.
    """

    def __init__(self, location: str, config: StorageConfig, *, uri: str, scheme: str, fs: pafs.FileSystem, root: str):
        self._location = location  # as given; may hold a SAS token in its query, never printed
        self._config = config
        self.uri = uri
        """The root, credential-free, for messages and summaries."""
        self.scheme = scheme
        self.fs = fs
        self.root = root
        """The root as a path in ``fs`` (``/abs/folder`` or ``bucket/prefix``)."""
        self.local_root = Path(root) if scheme == "file" else None
        self._s3_client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    def __reduce__(self):
        return (open_storage, self.reopen_args())

    def reopen_args(self) -> tuple[str, StorageConfig]:
        """What :func:`open_storage` takes to open this storage again in another process.

        The location may hold a SAS token in its query: pass it on, never print it.
        """
        return self._location, self._config

    @property
    def is_local(self) -> bool:
        return self.local_root is not None

    def path(self, key: str = "") -> str:
        """``key`` as a path inside :attr:`fs` (what pyarrow readers and datasets take)."""
        key = _check_key(key)
        return f"{self.root.rstrip('/')}/{key}" if key else self.root

    def local_path(self, key: str = "") -> Path:
        if self.local_root is None:
            raise ValueError(f"{self.uri} is not a local folder")
        return self.local_root / _check_key(key)

    def uri_of(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{_check_key(key)}"

    def child(self, prefix: str) -> Storage:
        """The same storage rooted at ``prefix`` below this root (shares clients)."""
        sub = object.__new__(Storage)
        sub.__dict__.update(self.__dict__)
        base, query = self._location.partition("?")[::2]  # a SAS token stays at the end
        sub._location = f"{base.rstrip('/')}/{_check_key(prefix)}" + (f"?{query}" if query else "")
        sub.uri, sub.root = self.uri_of(prefix), self.path(prefix)
        sub.local_root = Path(sub.root) if self.is_local else None
        return sub

    @contextmanager
    def _errors(self, operation: str, key: str = "") -> Iterator[None]:
        """The one place storage errors become ours; messages name the URI, never a secret."""
        where = self.uri_of(key) if key else self.uri
        try:
            yield
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"not found: {where}", uri=where, operation=operation) from exc
        # "from None": the original exceptions keep request details we do not want in a traceback
        except (OSError, pa.ArrowException) as exc:
            hint = CREDENTIALS_HINT if any(c in str(exc) for c in _PYARROW_AUTH_CODES) else ""
            message = redact(f"cannot {operation} {where}: {exc}{hint}", self._config)
            raise StorageError(message, uri=where, operation=operation) from None
        except Exception as exc:
            if not type(exc).__module__.startswith(("botocore", "boto3")):
                raise
            response = getattr(exc, "response", None) or {}
            if response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise ObjectNotFound(f"not found: {where}", uri=where, operation=operation) from None
            raise StorageError(
                boto_message(exc, operation, where, self._config), uri=where, operation=operation
            ) from None

    def read_bytes(self, key: str) -> bytes:
        with self._errors("read", key):
            if self.local_root is not None:
                return self.local_path(key).read_bytes()
            with self.fs.open_input_stream(self.path(key)) as fh:
                return fh.read()

    def read_with_mtime(self, key: str) -> tuple[bytes, float | None]:
        """The whole file and its modification time (seconds), in one request on S3."""
        if self.scheme == "s3":
            with self._errors("read", key):
                answer = self._s3().get_object(Bucket=self._bucket, Key=self._object_key(_check_key(key)))
                modified = answer.get("LastModified")
                return answer["Body"].read(), modified.timestamp() if modified else None
        with self._errors("read", key):
            info = self.fs.get_file_info(self.path(key))
            if info.type != pafs.FileType.File:
                raise FileNotFoundError(key)
        mtime = info.mtime.timestamp() if info.mtime else None
        return self.read_bytes(key), mtime

    def open_input(self, key: str) -> pa.NativeFile:
        """A seekable file for pyarrow / DuckDB readers (Parquet, images); close it after use."""
        with self._errors("open", key):
            return self.fs.open_input_file(self.path(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` is a file (one HEAD request on object storage)."""
        if self.scheme == "s3":
            # pyarrow follows a missing key's HEAD with a LIST (is it a folder?): two requests
            try:
                with self._errors("check", key):  # a 404 becomes ObjectNotFound there
                    self._s3().head_object(Bucket=self._bucket, Key=self._object_key(_check_key(key)))
            except ObjectNotFound:
                return False
            return True
        with self._errors("check", key):
            return self.fs.get_file_info(self.path(key)).type == pafs.FileType.File

    def existing(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` are files: one listing on S3 for keys that share a prefix (a shard's
        parts), one check per key elsewhere."""
        keys = [_check_key(k) for k in keys]
        if self.scheme != "s3" or len(keys) < 2:
            return {k for k in keys if self.exists(k)}
        first, last = min(keys), max(keys)
        common = os.path.commonprefix([first, last])
        found: set[str] = set()
        with self._errors("list", common):
            pages = (
                self._s3()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self._bucket, Prefix=self._object_key(common), StartAfter=self._object_key(first)[:-1])
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self._object_key("")) :] if self._object_key("") else obj["Key"]
                    found.add(key)
                if found and max(found) >= last:
                    break
        return found & set(keys)

    @property
    def _bucket(self) -> str:
        return self.root.partition("/")[0]

    def _object_key(self, key: str) -> str:
        prefix = self.root.partition("/")[2].strip("/")
        return f"{prefix}/{key}" if prefix and key else (f"{prefix}/" if prefix else key)

    def list(
        self,
        prefix: str = "",
        include: str | Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        *,
        hidden: bool = False,
    ) -> list[str]:
        """Keys of the files under ``prefix``, sorted, filtered by globs on the path below ``prefix``.

        Hidden names (a segment starting with ``.``, such as ``.tmp-*`` files) are left out unless
        ``hidden``. One request per 1,000 keys on object storage.
        """
        prefix = _check_key(prefix)
        included = [glob_regex(p) for p in ([include] if isinstance(include, str) else include or ["**"])]
        excluded = [glob_regex(p) for p in exclude]
        base = self.path(prefix).rstrip("/")
        with self._errors("list", prefix):
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        keys = []
        for info in infos:
            rel = info.path[len(base) + 1 :]
            if info.type != pafs.FileType.File or (not hidden and any(s.startswith(".") for s in rel.split("/"))):
                continue
            if any(r.fullmatch(rel) for r in included) and not any(r.fullmatch(rel) for r in excluded):
                keys.append(f"{prefix}/{rel}" if prefix else rel)
        return sorted(keys)

    def sizes(self, prefix: str = "") -> dict[str, tuple[int, int]]:
        """``{key: (size, mtime_ns)}`` of every file under ``prefix``, hidden ones included.

        One listing (one request per 1,000 keys on object storage); what a working copy is
        compared against.
        """
        prefix = _check_key(prefix)
        base = self.path(prefix).rstrip("/")
        with self._errors("list", prefix):
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        found = {}
        for info in infos:
            if info.type == pafs.FileType.File:
                rel = info.path[len(base) + 1 :]
                found[f"{prefix}/{rel}" if prefix else rel] = (int(info.size or 0), int(info.mtime_ns or 0))
        return found

    def download(self, key: str, dest: Path) -> None:
        """Copy ``key`` to the local file ``dest`` atomically (temp file + rename)."""
        with self._errors("read", key), commit.atomic_path(dest) as tmp, open(tmp, "wb") as fh:
            if self.scheme == "s3":  # one GET: pyarrow's stream and boto3's download_fileobj send a HEAD first
                body = self._s3().get_object(Bucket=self._bucket, Key=self._object_key(key))["Body"]
                for chunk in body.iter_chunks(8 << 20):
                    fh.write(chunk)
                return
            with self.fs.open_input_stream(self.path(key)) as src:
                while chunk := src.read(8 << 20):
                    fh.write(chunk)

    def delete(self, key: str) -> bool:
        """Delete ``key``; False if it was not there."""
        if self.scheme == "s3":
            # not through pyarrow: it would put an empty "folder/" marker object in its place
            if not self.exists(key):
                return False
            with self._errors("delete", key):
                self._s3().delete_object(Bucket=self._bucket, Key=self._object_key(_check_key(key)))
            return True
        try:
            with self._errors("delete", key):
                self.fs.delete_file(self.path(key))
        except ObjectNotFound:
            return False
        return True

    def commit_once(self, key: str, data: bytes) -> bool:
        """See :func:`quant_batch.store.commit.commit_once`: False means a duplicate was avoided."""
        return commit.commit_once(self, _check_key(key), data)

    def replace(self, key: str, data: bytes) -> None:
        """See :func:`quant_batch.store.commit.replace` (state files, summaries)."""
        commit.replace(self, _check_key(key), data)

    def is_committed(self, key: str) -> bool:
        return commit.is_committed(self, key)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Plain write of finished bytes through pyarrow; use :meth:`commit_once` / :meth:`replace`."""
        path = self.path(key)
        with self._errors("write", key):
            try:
                out = self.fs.open_output_stream(path)
            except FileNotFoundError:  # a filesystem with real folders; buckets need none
                self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
                out = self.fs.open_output_stream(path)
            with out:
                out.write(data)

    def s3_put(self, key: str, data: bytes | BinaryIO, *, if_none_match: bool) -> bool:
        """One ``PutObject`` of the whole object (bytes or a finished file); with ``if_none_match``
        a 412 returns False."""
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        client = self._s3()
        with self._errors("commit" if if_none_match else "write", key):
            try:
                client.put_object(Bucket=self._bucket, Key=self._object_key(key), Body=data, **extra)
            except ClientError as exc:
                if if_none_match and exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                    return False  # another attempt committed this key first: a duplicate avoided
                raise
        return True

    def _s3(self) -> Any:
        with self._lock:  # boto3 clients are thread-safe; building one is not
            if self._s3_client is None:
                with self._errors("connect to"):
                    self._s3_client = boto3_client(self._config, getattr(self.fs, "region", None))
            return self._s3_client

    def s3_endpoint(self) -> str | None:
        """The endpoint both S3 clients use (None: AWS itself)."""
        return endpoint(self._config) if self.scheme == "s3" else None


def _refuse_inline_secrets(location: str, parts: Any) -> None:
    if parts.password or (parts.username and parts.scheme in ("s3", "gs")):
        raise ConfigError(
            f"credentials in a storage URI are not accepted ({parts.scheme}://…): use the AWS_* / "
            "cloud SDK environment variables, a profile, or the storage: block"
        )


def open_storage(location: str | Path, config: StorageConfig | None = None) -> Storage:
    """The :class:`Storage` for a local path or a bucket URI.

    Raises:
        ConfigError: an unsupported scheme, credentials written into the URI, a missing profile.
        StorageError: the storage service could not be reached to set up (e.g. region lookup).
    """
    config = config or StorageConfig()
    text = str(location)
    parts = urlsplit(text)
    scheme = parts.scheme.lower() if "://" in text else "file"
    if scheme == "file":
        root = Path(parts.path if text.startswith("file://") else text).expanduser().absolute()
        return Storage(str(root), config, uri=str(root), scheme="file", fs=pafs.LocalFileSystem(), root=str(root))
    _refuse_inline_secrets(text, parts)
    display = f"{scheme}://{parts.netloc}{parts.path}".rstrip("/")  # no password, no query
    try:
        if scheme == "s3":
            if parts.query:
                raise ConfigError("s3:// URIs take no options: set AWS_ENDPOINT_URL / AWS_REGION or the storage: block")
            if len(parts.netloc) < 3:
                raise ConfigError(f"not a bucket name in {display}")
            fs: pafs.FileSystem = s3_filesystem(config, parts.netloc)
            root = f"{parts.netloc}{parts.path}".rstrip("/")
        elif scheme == "az":
            account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
            if not account:
                raise ConfigError("az:// needs AZURE_STORAGE_ACCOUNT_NAME (or use abfss://container@account…)")
            fs, root = pafs.AzureFileSystem(account_name=account), f"{parts.netloc}{parts.path}".rstrip("/")
        elif scheme in ("gs", "gcs", "abfs", "abfss"):
            fs, root = pafs.FileSystem.from_uri(text)
            root = root.rstrip("/")
        else:
            raise ConfigError(f"unsupported storage scheme {scheme}:// (use a path, s3://, gs://, az:// or abfss://)")
    except ConfigError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(redact(f"cannot open {display}: {exc}", config), uri=display, operation="open") from None
    except Exception as exc:
        if type(exc).__module__.startswith("botocore"):  # e.g. ProfileNotFound
            raise ConfigError(redact(f"storage settings for {display}: {exc}", config)) from None
        raise
    return Storage(text, config, uri=display, scheme=scheme, fs=fs, root=root)


def catalog_cache_dir(storage: Storage, config: StorageConfig | None = None) -> Path:
    """Where the local, disposable ``catalog.duckdb`` of an output lives.

    A local output keeps it in its own folder, as before. A bucket output gets one folder per
    (endpoint, bucket, prefix) under ``cache_dir`` (default ``$XDG_CACHE_HOME/quant-batch``), so
    two outputs, or the same bucket name on two servers, never share a catalog.
    """
    if storage.local_root is not None:
        return storage.local_root
    config = config or StorageConfig()
    base = config.cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quant-batch"
    identity = f"{storage.s3_endpoint() or ''}|{storage.uri}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", storage.uri.split("://", 1)[-1]).strip("-")[:80]
    return Path(base) / "catalogs" / f"{storage.scheme}-{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def register_parquet(
    con: Any, name: str, storage: Storage, keys: Sequence[str], schema: pa.Schema | None = None
) -> Any:
    """Make the Parquet files ``keys`` queryable in DuckDB as view ``name`` through pyarrow.

    DuckDB's ``httpfs`` extension is not in the wheel and cannot be installed offline; a pyarrow
    dataset registered on the connection reads the same files with projection and filter pushdown.
    ``schema`` is required when ``keys`` is empty. Returns the dataset.
    """
    import pyarrow.dataset as ds

    if not keys and schema is None:
        raise ValueError(f"register_parquet({name!r}): no files and no schema")
    with storage._errors("read", keys[0] if keys else ""):
        dataset = ds.dataset([storage.path(k) for k in keys], filesystem=storage.fs, format="parquet", schema=schema)
    con.register(name, dataset)
    return dataset
