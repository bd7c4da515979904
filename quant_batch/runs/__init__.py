"""The life of a run: its summary record, its single-writer session, and the in-process executor."""

from quant_batch.runs.executor import interleaved_shards, run_in_threads, sum_results
from quant_batch.runs.session import RunSession
from quant_batch.runs.summary import RunSummary, list_runs, new_run_id

__all__ = ["RunSession", "RunSummary", "interleaved_shards", "list_runs", "new_run_id", "run_in_threads", "sum_results"]
