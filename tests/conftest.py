"""Shared fixtures: one emulator per test session, reset before every test that uses it."""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest  # noqa: E402

from quant_batch.emulator import EmulatorServer  # noqa: E402

TEST_TOKEN = "test-token-SECRET-123"
TEST_ORG = "test-org"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """No test inherits another's process-wide rate-limit buckets (or their adapted rates)."""
    from quant_batch.client.factory import reset_shared_limiters

    reset_shared_limiters()
    yield
    reset_shared_limiters()


@pytest.fixture(scope="session")
def emulator_server():
    """The emulator in a thread on a free loopback port, for the whole session."""
    with EmulatorServer(token=TEST_TOKEN, port=0, mode="thread") as server:
        yield server


@pytest.fixture
def emulator(emulator_server):
    """The session emulator with stats cleared and every fault off."""
    emulator_server.reset()
    yield emulator_server


@pytest.fixture
def api_env(emulator, monkeypatch):
    """Point QUANT_* environment variables at the emulator; returns the emulator."""
    monkeypatch.setenv("QUANT_API_KEY", TEST_TOKEN)
    monkeypatch.setenv("QUANT_ORGANIZATION", TEST_ORG)
    monkeypatch.setenv("QUANT_BASE_URL", emulator.base_url)
    return emulator


@pytest.fixture
def client(api_env):
    """A pipeline client on the emulator with a short retry budget."""
    from quant_batch.client.config import ApiConfig, RateLimits
    from quant_batch.client.factory import build_client

    with build_client(ApiConfig(max_attempts=4, max_retry_seconds=30), RateLimits(), pool_size=8) as c:
        yield c


# a real S3-compatible server (moto) for every test that uses a bucket
from tests.s3 import moto_endpoint, s3_env, storage  # noqa: E402, F401
