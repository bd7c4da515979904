"""The commit protocol on a local folder and on a real S3-compatible server (moto over loopback)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quant_batch.store import commit
from quant_batch.store.files import write_bytes_atomic, write_parquet_atomic
from quant_batch.store.storage import Storage, open_storage
from tests.s3 import BUCKET, all_keys, start_moto_process

KEY = "parts/vectors/g1/run-0001.parquet"


def _table(n: int = 4, dim: int = 8) -> pa.Table:
    vectors = pa.FixedSizeListArray.from_arrays(pa.array([float(i) for i in range(n * dim)], pa.float32()), dim)
    return pa.table({"chunk_id": [f"c{i}" for i in range(n)], "vector": vectors})


def test_commit_once_first_writer_wins_and_second_is_a_duplicate(storage: Storage):
    assert not storage.is_committed(KEY)
    assert storage.commit_once(KEY, b"first") is True
    assert storage.commit_once(KEY, b"second") is False
    assert storage.read_bytes(KEY) == b"first"
    assert storage.is_committed(KEY)
    assert storage.list("", hidden=True) == [KEY]  # no temp file or object left behind


def test_replace_overwrites_whole(storage: Storage):
    storage.replace("state/generation.json", b'{"gen": "a"}')
    storage.replace("state/generation.json", b'{"gen": "b"}')
    assert storage.read_bytes("state/generation.json") == b'{"gen": "b"}'
    assert storage.list("state", hidden=True) == ["state/generation.json"]


def test_commit_table_once_writes_a_readable_part_with_our_encoding(storage: Storage):
    assert commit.commit_table_once(storage, KEY, _table(), {"run_id": "r1"}) is True
    with storage.open_input(KEY) as fh:
        pf = pq.ParquetFile(fh)
        assert pf.schema_arrow.metadata[b"run_id"] == b"r1"
        columns = {
            pf.metadata.row_group(0).column(i).path_in_schema: pf.metadata.row_group(0).column(i).compression
            for i in range(pf.metadata.num_columns)
        }
        assert pf.read().equals(_table().replace_schema_metadata({"run_id": "r1"}))
    assert columns["vector.list.element"] == "UNCOMPRESSED" and columns["chunk_id"] == "ZSTD"


def test_writer_that_raises_leaves_no_object_and_no_temp_object(s3_env):
    storage = open_storage(f"s3://{BUCKET}/out")
    table = _table(1000, 32)
    with pytest.raises(RuntimeError, match="boom"), commit.building_part(storage, KEY) as part:
        with pq.ParquetWriter(part.sink, table.schema) as writer:
            writer.write_table(table)
            raise RuntimeError("boom")
    assert all_keys(s3_env) == []
    # the control: streaming to the final key, as pyarrow invites, does leave an object behind,
    # so the assertion above would catch a commit that streamed
    with pytest.raises(RuntimeError, match="boom"), storage.fs.open_output_stream(storage.path(KEY)) as out:
        with pq.ParquetWriter(out, table.schema) as writer:
            writer.write_table(table)
            raise RuntimeError("boom")
    assert all_keys(s3_env) == [f"out/{KEY}"]


def test_building_part_commits_on_clean_exit(storage: Storage):
    with commit.building_part(storage, KEY) as part:
        pq.write_table(_table(), part.sink)
    assert part.committed is True
    with commit.building_part(storage, KEY) as again:
        pq.write_table(_table(), again.sink)
    assert again.committed is False


def test_local_writer_that_raises_leaves_nothing(tmp_path: Path):
    storage = open_storage(tmp_path)
    with pytest.raises(RuntimeError), commit.building_part(storage, KEY) as part:
        part.sink.write(b"half a part")
        raise RuntimeError("boom")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_files_helpers_keep_atomic_rename(tmp_path: Path):
    target = tmp_path / "runs" / "r1.json"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")  # replace semantics, as before
    assert target.read_bytes() == b"two"
    part = tmp_path / "parts" / "p.parquet"
    write_parquet_atomic(_table(), part, {"model": "m"})
    assert pq.read_table(part).schema.metadata[b"model"] == b"m"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["p.parquet", "r1.json"]


def test_atomic_path_leaves_no_temp_when_the_writer_raises(tmp_path: Path):
    target = tmp_path / "state" / "live.parquet"
    with pytest.raises(RuntimeError), commit.atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert not target.exists() and list(target.parent.iterdir()) == []


def _racer(storage: Storage, name: str, keys: list[str], barrier, results) -> None:
    barrier.wait()  # both processes start committing the same keys at the same moment
    results.put((name, [storage.commit_once(k, name.encode()) for k in keys]))


def _race(storage: Storage, keys: list[str]) -> dict[str, list[bool]]:
    ctx = mp.get_context("spawn")  # fresh interpreters: no shared clients, Storage travels by pickle
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(storage, name, keys, barrier, results)) for name in ("a", "b")]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return outcome


def _check_race(storage: Storage, keys: list[str], outcome: dict[str, list[bool]]) -> None:
    for i, key in enumerate(keys):
        winners = [name for name, won in outcome.items() if won[i]]
        assert len(winners) == 1, (key, outcome)  # exactly one commit, the other counted a duplicate
        assert storage.read_bytes(key) == winners[0].encode()
    assert sum(not won for results in outcome.values() for won in results) == len(keys)


def test_two_processes_race_for_the_same_parts_in_a_bucket(monkeypatch, tmp_path):
    from tests.s3 import aws_env, boto_client

    with start_moto_process() as endpoint:
        aws_env(monkeypatch, endpoint)
        boto_client(endpoint).create_bucket(Bucket=BUCKET)
        storage = open_storage(f"s3://{BUCKET}/race")
        keys = [f"parts/vectors/g1/run-{i:04d}.parquet" for i in range(40)]
        outcome = _race(storage, keys)
        _check_race(storage, keys, outcome)
        assert all_keys(endpoint) == sorted(f"race/{k}" for k in keys)


def test_two_processes_race_for_the_same_parts_on_disk(tmp_path):
    storage = open_storage(tmp_path / "out")
    keys = [f"parts/vectors/g1/run-{i:04d}.parquet" for i in range(40)]
    outcome = _race(storage, keys)
    _check_race(storage, keys, outcome)
    assert storage.list("", hidden=True) == keys


def test_commit_file_once_and_replace_from_file(storage: Storage, tmp_path: Path):
    """Big state files come from DuckDB as local files: committed without loading them whole."""
    src = tmp_path / "scratch" / "live.parquet"
    src.parent.mkdir()
    pq.write_table(_table(200), src)
    key = "state/live-g1-run1.parquet"
    assert commit.commit_file_once(storage, key, src) is True
    assert commit.commit_file_once(storage, key, src) is False
    assert storage.read_bytes(key) == src.read_bytes() and src.exists()
    src.write_bytes(b'{"live": "live-g1-run1.parquet"}')
    commit.replace_from_file(storage, "state/index-g1.json", src)
    commit.replace_from_file(storage, "state/index-g1.json", src)
    assert storage.read_bytes("state/index-g1.json") == src.read_bytes()
    assert storage.list("state", hidden=True) == ["state/index-g1.json", key]


def test_other_pyarrow_filesystems_take_the_check_then_write_path(tmp_path: Path):
    """gs:// and az:// go through pyarrow without a conditional write; a sub-tree filesystem
    stands in for them here (real folder, not the local code path)."""
    import pyarrow.fs as pafs

    from quant_batch.store.storage import StorageConfig

    (tmp_path / "bucket").mkdir()
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    storage = Storage("gs://bucket/out", StorageConfig(), uri="gs://bucket/out", scheme="gs", fs=fs, root="bucket/out")
    assert storage.commit_once(KEY, b"first") and not storage.commit_once(KEY, b"second")
    storage.replace("state/generation.json", b"1")
    storage.replace("state/generation.json", b"2")
    assert storage.read_bytes(KEY) == b"first" and storage.read_bytes("state/generation.json") == b"2"
    assert storage.list() == [KEY, "state/generation.json"]
    assert (tmp_path / "bucket" / "out" / KEY).read_bytes() == b"first"
