"""Run the shards of a run in this process: a bounded thread pool, results absorbed as they finish.

The Prefect flows do the same with task runners (``quant_batch/flows``); this is the executor
for runs without Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import fields
from typing import Any, TypeVar

R = TypeVar("R")


def sum_results(results: list[R], cls: type[R]) -> R:
    """Add up the counters of per-shard results: numbers are summed, ``dict`` counters merged."""
    total = cls()
    for r in results:
        for f in fields(cls):  # type: ignore[arg-type]
            value, acc = getattr(r, f.name), getattr(total, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(total, f.name, acc + value)
            elif isinstance(value, dict):
                for k, v in value.items():
                    acc[k] = acc.get(k, 0) + v
    return total


def interleaved_shards(items: list[R], concurrency: int) -> list[list[R]]:
    """At most 4 × concurrency interleaved shards: few Prefect tasks, and slow units spread out."""
    n = max(1, min(len(items), concurrency * 4))
    return [items[i::n] for i in range(n)] if items else []


def run_in_threads(session: Any, shards: list, work: Callable[[Any], Any], concurrency: int) -> None:
    """The library's executor: ``work`` each shard on a bounded pool, ``absorb`` results as they
    finish. Every future is waited on, like the flows' ``submit_windowed``."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for fut in as_completed([pool.submit(work, shard) for shard in shards]):
            session.absorb(fut.result())
