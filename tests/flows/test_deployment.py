"""prefect.yaml → deployments on a real (temporary) Prefect server → a run completes."""

from __future__ import annotations

import asyncio

import pytest
from prefect.deployments import run_deployment
from prefect.runner import Runner

from quant_batch.flows.deploy import load_deployments
from tests.pipeline.conftest import REPO, api_calls, query

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_deployment_from_prefect_yaml_runs_against_the_emulator(tmp_path, api_env, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "index"
    [deployment] = load_deployments(REPO / "prefect.yaml", ["nightly-corpus"])
    assert deployment.schedules and deployment.schedules[0].schedule.cron == "0 2 * * *"
    runner = Runner(name="test-runner", pause_on_shutdown=False)
    runner.add_deployment(deployment)
    flow_run = run_deployment(
        "embed-corpus/nightly-corpus", parameters={"target": "configs/corpus.yaml", "out": str(out)}, timeout=0
    )
    asyncio.run(runner.start(run_once=True))
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state.is_completed(), state
    assert query(out, "SELECT count(*) FROM chunks")[0][0] > 0
    assert api_calls(api_env) > 0
    # credentials are not parameters: the stored run parameters hold no token
    assert "test-token" not in str(flow_run.parameters)


def test_api_key_from_a_prefect_secret_block(api_env, monkeypatch):
    from prefect.blocks.system import Secret

    from quant_batch.client.config import ApiConfig, RateLimits
    from quant_batch.client.factory import build_client
    from tests.conftest import TEST_TOKEN

    Secret(value=TEST_TOKEN).save("quant-test-key", overwrite=True)
    monkeypatch.delenv("QUANT_API_KEY")
    with build_client(ApiConfig(secret_block="quant-test-key"), RateLimits(), pool_size=1) as client:
        assert client.embed(["hello from a secret"]).vectors.shape == (1, 1024)
        assert TEST_TOKEN not in repr(client)
