"""Prefect entrypoint for `prefect.yaml` (`flows/render_images.py:render_images`): the flow ships in the package.

This folder is not a Python package and is not installed: the code lives in
`quant_batch.flows.render_images`, so a worker, `quant-batch serve` and a Dask scheduler all load the same
installed flow.
"""

from quant_batch.flows.render_images import render_images

__all__ = ["render_images"]
