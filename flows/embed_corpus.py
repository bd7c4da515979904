"""Prefect entrypoint for `prefect.yaml` (`flows/embed_corpus.py:embed_corpus`): the flow ships in the package.

This folder is not a Python package and is not installed: the code lives in
`quant_batch.flows.embed_corpus`, so a worker, `quant-batch serve` and a Dask scheduler all load the same
installed flow.
"""

from quant_batch.flows.embed_corpus import embed_corpus

__all__ = ["embed_corpus"]
