"""Pieces both flows share: a bounded submission window, progress hooks, run artifacts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed

from quant_batch.runs.runner import PROGRESS
from quant_batch.runs.summary import RunSummary

_END = object()


def submit_windowed(
    task: Any,
    items: Iterable[Any],
    window: int,
    absorb: Callable[[Any], None],
    *,
    may_submit: Callable[[Any], bool] = lambda item: True,
    **kwargs: Any,
) -> list[Any]:
    """Keep at most ``window`` task runs in flight; ``absorb`` each result as it completes.

    ``items`` is consumed lazily, so a producer (a streaming plan) can still be cutting later
    items while the first ones run. ``may_submit`` is asked before each submission (the spend
    cap, a halted run); items it refuses are returned. Every future is waited on: a flow that
    returns early would be marked Completed while Prefect silently cancels its queued tasks.
    """
    pending = iter(items)
    exhausted = False
    inflight: list[Any] = []
    refused: list[Any] = []
    while not exhausted or inflight:
        while not exhausted and len(inflight) < window:
            item = next(pending, _END)
            if item is _END:
                exhausted = True
                break
            if not may_submit(item):
                refused.append(item)
                continue
            inflight.append(task.submit(item, **kwargs))
        if not inflight:
            break
        fut = next(as_completed(inflight))
        inflight.remove(fut)
        absorb(fut.result())
    return refused


class Progress:
    """A Prefect progress artifact plus the CLI's listener, updated every few percent.

    ``total`` may be a callable: a streaming plan still counts its work while it is being done.
    """

    def __init__(self, key: str, total: int | Callable[[], int], description: str):
        self._total = total
        self.done = 0
        self._last = -1.0
        self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)

    @property
    def total(self) -> int:
        return max(self._total() if callable(self._total) else self._total, 0)

    def advance(self, n: int) -> None:
        self.done += n
        pct = 100.0 * self.done / self.total if self.total else 100.0
        listener = PROGRESS.get()
        if listener:
            listener(self.done, self.total)
        if pct - self._last >= 5 or self.done >= self.total:
            update_progress_artifact(artifact_id=self.artifact_id, progress=min(pct, 100.0))
            self._last = pct


def link_flow_run(summary: RunSummary) -> None:
    """Record the flow run's Prefect UI page in the run summary (the web page links to it)."""
    from prefect.context import FlowRunContext
    from prefect.utilities.urls import url_for

    ctx = FlowRunContext.get()
    # the same link Prefect logs as "View at ..." (prefect.runtime's ui_url points elsewhere)
    summary.flow_run_url = (url_for(ctx.flow_run) or None) if ctx and ctx.flow_run else None


def publish_summary(key: str, title: str, summary: RunSummary) -> None:
    """The run summary as a markdown artifact (no secrets: built from counts only)."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in summary.table())
    create_markdown_artifact(key=key, markdown=f"# {title}\n\n| | |\n|---|---|\n{rows}\n", description=title)


def report(key: str, title: str, summary: RunSummary) -> dict[str, Any]:
    """A flow's last step: the summary artifact, one log line, and the summary as the flow's result."""
    from prefect import get_run_logger

    publish_summary(key, title, summary)
    get_run_logger().info("run %s %s: %s", summary.run_id, summary.status, summary.reason or "ok")
    return summary.to_dict()
