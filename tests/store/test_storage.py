"""Resolving locations, reading and listing, secrets, the catalog cache folder, DuckDB over pyarrow."""

from __future__ import annotations

import pickle
import traceback

import duckdb
import pyarrow as pa
import pytest

from quant_batch.errors import ConfigError, ObjectNotFound, StorageError
from quant_batch.store import commit
from quant_batch.store.storage import Storage, StorageConfig, catalog_cache_dir, open_storage, register_parquet
from tests.s3 import ACCESS_KEY, BUCKET, aws_env, start_moto_process

DOCS = ["docs/a.md", "docs/sub/b.md", "docs/sub/c.txt", "docs/.hidden.md", "docs/sub/.tmp-1-x.md", "docs/x.pdf"]


def test_paths_resolve_to_local_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_storage("rel/out").root == str(tmp_path / "rel" / "out")
    assert open_storage(f"file://{tmp_path}/x").local_path("k") == tmp_path / "x" / "k"
    assert open_storage(tmp_path).is_local


def test_s3_uri_uses_aws_endpoint_url(s3_env):
    storage = open_storage(f"s3://{BUCKET}/out/")
    assert (storage.uri, storage.root, repr(storage)) == (
        f"s3://{BUCKET}/out",
        f"{BUCKET}/out",
        f"Storage('s3://{BUCKET}/out')",
    )
    storage.commit_once("k.txt", b"x")  # boto3 and pyarrow reach the same server
    assert storage.exists("k.txt") and storage.read_bytes("k.txt") == b"x"


def test_storage_block_endpoint_wins_over_environment(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    storage = open_storage(f"s3://{BUCKET}/out", StorageConfig(endpoint_url=s3_env, region="eu-west-1"))
    storage.replace("k", b"v")
    assert storage.read_bytes("k") == b"v"


@pytest.mark.parametrize(
    "include, exclude, expected",
    [
        (None, (), ["docs/a.md", "docs/sub/b.md", "docs/sub/c.txt", "docs/x.pdf"]),
        ("**/*.md", (), ["docs/a.md", "docs/sub/b.md"]),
        ("*.md", (), ["docs/a.md"]),
        (["**/*.md", "**/*.txt"], ["sub/**"], ["docs/a.md"]),
        ("sub/?.*", ["**/*.txt"], ["docs/sub/b.md"]),
    ],
)
def test_list_with_globs_is_the_same_on_disk_and_in_a_bucket(storage: Storage, include, exclude, expected):
    for key in DOCS + ["other/a.md"]:
        storage.replace(key, b"text")
    assert storage.list("docs", include, exclude) == expected
    assert storage.list("missing/prefix") == []


def test_list_hidden_shows_temp_files(storage: Storage):
    for key in DOCS:
        storage.replace(key, b"text")
    assert "docs/sub/.tmp-1-x.md" in storage.list("docs", hidden=True)


def test_child_storage_and_pickle_keep_the_root(storage: Storage):
    sub = storage.child("parts/vectors")
    sub.commit_once("g1/p.parquet", b"1")
    assert storage.list() == ["parts/vectors/g1/p.parquet"]
    again = pickle.loads(pickle.dumps(sub))
    assert again.uri == sub.uri and again.read_bytes("g1/p.parquet") == b"1"


def test_missing_key_and_delete(storage: Storage):
    with pytest.raises(ObjectNotFound) as info:
        storage.read_bytes("nope.json")
    assert info.value.uri.endswith("/nope.json")
    storage.replace("x", b"1")
    assert storage.delete("x") is True
    assert not storage.exists("x")
    assert storage.list() == []


def test_keys_cannot_escape_the_root(storage: Storage):
    for bad in ("../x", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError):
            storage.commit_once(bad, b"x")


def test_unsupported_and_unsafe_locations_are_config_errors(monkeypatch):
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    with pytest.raises(ConfigError, match="unsupported storage scheme"):
        open_storage("ftp://host/x")
    with pytest.raises(ConfigError, match="AZURE_STORAGE_ACCOUNT_NAME"):
        open_storage("az://container/x")
    with pytest.raises(ConfigError, match="take no options"):
        open_storage(f"s3://{BUCKET}/x?endpoint_override=h:1")
    with pytest.raises(ConfigError) as info:
        open_storage("s3://AKIAINLINE:inline-s3cret-value@bucket/x")
    assert "inline-s3cret-value" not in str(info.value) and "AKIAINLINE" not in str(info.value)


def test_gs_uri_is_resolved_by_pyarrow():
    storage = open_storage("gs://some-bucket/prefix")
    assert (storage.scheme, storage.root, storage.uri) == ("gs", "some-bucket/prefix", "gs://some-bucket/prefix")


def _leaks(secret: str, *texts: str) -> list[str]:
    return [t for t in texts if secret in t]


def test_wrong_secret_key_never_reaches_messages_or_reprs(monkeypatch, tmp_path):
    """A server that checks signatures: the real key pair works, a wrong secret fails cleanly."""
    import boto3

    with start_moto_process(INITIAL_NO_AUTH_ACTION_COUNT="4") as endpoint:
        admin = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": "setup",
        }
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="writer")
        key = iam.create_access_key(UserName="writer")["AccessKey"]
        iam.put_user_policy(
            UserName="writer",
            PolicyName="all",
            PolicyDocument=('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'),
        )
        boto3.client("s3", **admin).create_bucket(Bucket=BUCKET)

        aws_env(monkeypatch, endpoint, secret=key["SecretAccessKey"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        assert open_storage(f"s3://{BUCKET}/out").commit_once("ok", b"1")  # the setup can succeed

        wrong = "WRONG-s3cret-do-not-print-0123456789"
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
        env_storage = open_storage(f"s3://{BUCKET}/out")
        block = StorageConfig(access_key_id=key["AccessKeyId"], secret_access_key=wrong, endpoint_url=endpoint)
        block_storage = open_storage(f"s3://{BUCKET}/out", block)
        for storage in (env_storage, block_storage):
            for call in (
                lambda s=storage: s.commit_once("p", b"1"),
                lambda s=storage: s.replace("s", b"1"),
                lambda s=storage: s.list(),
                lambda s=storage: s.read_bytes("ok"),
            ):
                with pytest.raises(StorageError) as info:
                    call()
                text = "".join(traceback.format_exception(info.value))
                assert f"s3://{BUCKET}/out" in str(info.value) and "AWS_SECRET_ACCESS_KEY" in str(info.value)
                assert not _leaks(wrong, str(info.value), repr(info.value), text)
            assert not _leaks(wrong, repr(storage), str(vars(storage)))
        assert "SignatureDoesNotMatch" in str(_error(lambda: env_storage.commit_once("p", b"1")))
        assert not _leaks(wrong, repr(block), str(block), block.model_dump_json())

        # a named profile (storage.profile) supplies the right keys to both clients
        creds = tmp_path / "credentials"
        creds.write_text(
            f"[qb]\naws_access_key_id = {key['AccessKeyId']}\naws_secret_access_key = {key['SecretAccessKey']}\n"
        )
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
        by_profile = open_storage(f"s3://{BUCKET}/out", StorageConfig(profile="qb"))
        assert by_profile.commit_once("p", b"1") and by_profile.list() == ["ok", "p"]
        with pytest.raises(ConfigError, match="storage settings"):
            open_storage(f"s3://{BUCKET}/out", StorageConfig(profile="missing"))


def _error(call) -> Exception:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc
    raise AssertionError("no error")


def test_unreachable_endpoint_is_a_storage_error(monkeypatch, tmp_path):
    aws_env(monkeypatch, "http://127.0.0.1:9")
    storage = open_storage(f"s3://{BUCKET}/out", StorageConfig(request_attempts=1))
    with pytest.raises(StorageError, match=f"s3://{BUCKET}/out/p"):
        storage.commit_once("p", b"1")


def test_catalog_cache_dir(tmp_path, s3_env):
    local = open_storage(tmp_path / "out")
    assert catalog_cache_dir(local) == tmp_path / "out"
    bucket = open_storage(f"s3://{BUCKET}/out")
    config = StorageConfig(cache_dir=tmp_path / "cache")
    folder = catalog_cache_dir(bucket, config)
    assert folder.parent == tmp_path / "cache" / "catalogs" and folder.name.startswith(f"s3-{BUCKET}-out-")
    other_prefix = catalog_cache_dir(bucket.child("x"), config)
    other_server = catalog_cache_dir(
        open_storage(f"s3://{BUCKET}/out", StorageConfig(endpoint_url="http://h:1")), config
    )
    assert len({folder, other_prefix, other_server}) == 3


def test_register_parquet_reads_bucket_parts_in_duckdb(storage: Storage, tmp_path):
    keys = []
    for i in range(3):
        table = pa.table({"chunk_id": [f"r{i}-{j}" for j in range(5)], "n": list(range(i * 5, i * 5 + 5))})
        key = f"parts/vectors/g1/run-{i}.parquet"
        assert commit.commit_table_once(storage, key, table)
        keys.append(key)
    assert storage.list("parts/vectors/g1", "*.parquet") == keys
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"))
    register_parquet(con, "parts", storage, keys)
    # fetchall: duckdb 2 keeps a connection busy until a result is read to its end
    assert con.execute("select count(*), sum(n) from parts").fetchall() == [(15, sum(range(15)))]
    assert con.execute("select chunk_id from parts where n = 7").fetchall() == [("r1-2",)]
    con.execute("create table chunks as select * from parts")  # how a catalog rebuild would load them
    assert con.execute("select count(*) from chunks").fetchall() == [(15,)]
    register_parquet(con, "empty", storage, [], schema=pa.schema([("chunk_id", pa.string())]))
    assert con.execute("select count(*) from empty").fetchall() == [(0,)]


def test_existing_finds_a_shards_committed_parts_and_nothing_else(storage):
    keys = [f"parts/vectors/g1/run-a-{b:06d}.parquet" for b in range(10, 15)]
    for key in (keys[1], keys[3], "parts/vectors/g1/run-a-000009.parquet", "parts/vectors/g1/run-ab-000011.parquet"):
        assert storage.commit_once(key, b"part")
    assert storage.existing(keys) == {keys[1], keys[3]}
    assert storage.existing(keys[:1]) == set()
    assert storage.existing([keys[3]]) == {keys[3]}
