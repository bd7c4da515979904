"""Prefect entrypoint for `prefect.yaml` (`flows/enrich.py:enrich`): the flow ships in the package.

This folder is not a Python package and is not installed: the code lives in
`quant_batch.flows.enrich`, so a worker, `quant-batch serve` and a Dask scheduler all load the same
installed flow.
"""

from quant_batch.flows.enrich import enrich

__all__ = ["enrich"]
