"""The Python API under Prefect: the runner follows the configured API, and a user's flow gets a subflow."""

from __future__ import annotations

from pathlib import Path

import pytest

import quant_batch as qb

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAQ = Path(__file__).resolve().parents[2] / "quant_batch" / "data" / "sample" / "corpus_table" / "faq.parquet"


def test_configured_api_runs_the_flow_and_in_process_on_request(tmp_path, api_env):
    seen: list[tuple[int, int]] = []
    summary = qb.embed(FAQ, out=tmp_path / "index", concurrency=2, on_progress=lambda d, t: seen.append((d, t)))
    assert summary.status == "completed", summary.reason
    assert summary.stats["runner"] == "prefect" and summary.stats["documents"] > 0
    assert seen and seen[-1][0] == seen[-1][1] == summary.stats["embedded"]
    again = qb.embed(FAQ, out=tmp_path / "index", prefect=False)
    assert again.stats["runner"] == "in-process" and again.api_calls == 0


def test_called_from_a_user_flow_is_a_subflow(tmp_path, api_env):
    from prefect import flow
    from prefect.context import FlowRunContext

    @flow(name="user-nightly")
    def nightly(out: str) -> tuple[str, str, str | None]:
        parent = FlowRunContext.get().flow_run.id
        summary = qb.embed(FAQ, out=out, max_cost=1.0)
        return summary.status, summary.stats["runner"], str(parent)

    status, runner, parent = nightly(str(tmp_path / "index"))
    assert (status, runner) == ("completed", "prefect")

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        children = [r for r in client.read_flow_runs() if r.parent_task_run_id is not None]
        subflow_parents = {client.read_task_run(r.parent_task_run_id).flow_run_id for r in children}
    assert any(str(p) == parent for p in subflow_parents)


def test_refused_token_under_prefect_is_not_retried(tmp_path, api_env, monkeypatch, capsys):
    """Issue 12, item 4: a 403 stops the run at the first calls; no task retry resends anything."""
    monkeypatch.setenv("QUANT_API_KEY", "wrong-token")
    summary = qb.embed(FAQ, out=tmp_path / "index", concurrency=2, prefect=True)
    sent = sum(api_env.stats()["by_endpoint"]["embeddings"].values())
    assert summary.status == "failed" and summary.exit_code == 2, summary.reason
    assert "refused the credentials" in summary.reason
    assert summary.stats["runner"] == "prefect"
    assert 1 <= sent <= 2 and summary.api_calls == sent  # the calls made are counted, none resent
    assert summary.flow_run_url and "/runs/flow-run/" in summary.flow_run_url
    logs = capsys.readouterr()
    assert "Retry 1/" not in logs.out + logs.err and "Traceback" not in logs.out + logs.err
