"""A real S3-compatible server (moto) for tests that use buckets, plus AWS_* settings scoped to one test.

The fixtures (``moto_endpoint``, ``s3_env``, ``storage``) are registered in ``tests/conftest.py``.

The threaded server lives in the test process for the whole session (~5 ms to start); tests that
need a server of their own (other processes, authentication switched on) start the ``moto.server``
command with :func:`start_moto_process`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

BUCKET = "qb-test"
ACCESS_KEY = "AKIATESTSTORAGE00001"
SECRET_KEY = "test-secret-STORAGE-s3cr3t-value"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("moto server did not start listening")


@contextmanager
def start_moto_process(**env: str) -> Iterator[str]:
    """``python -m moto.server`` on a free loopback port; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One in-process moto server for the session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _wait_listening(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, secret: str = SECRET_KEY) -> None:
    """Point the standard AWS variables at ``endpoint`` for this test only, away from ~/.aws."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def boto_client(endpoint: str, secret: str = SECRET_KEY):
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret
    )


def all_keys(endpoint: str, bucket: str = BUCKET) -> list[str]:
    """Every object in the bucket, read straight from the server (not through our code)."""
    listing = boto_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch) -> str:
    """An empty server with one empty bucket and AWS_* pointing at it; returns the endpoint."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")).read()
    aws_env(monkeypatch, moto_endpoint)
    boto_client(moto_endpoint).create_bucket(Bucket=BUCKET)
    return moto_endpoint


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """The same Storage API over a local folder and over a bucket prefix."""
    from quant_batch.store.storage import open_storage

    if request.param == "local":
        return open_storage(tmp_path / "out")
    request.getfixturevalue("s3_env")
    return open_storage(f"s3://{BUCKET}/out")
