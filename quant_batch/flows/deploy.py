"""Serve the deployments of ``prefect.yaml`` from one process (``quant-batch serve``).

For users without a work pool: the same entrypoints, parameters and schedules as
``prefect deploy --all`` would register, served by a Prefect runner in this process. Schedules
need a real Prefect server (``PREFECT_API_URL``); on an ephemeral server runs can still be
triggered with ``prefect deployment run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from quant_batch.errors import ConfigError


def _flow(entrypoint: str) -> Any:
    """``path/to/file.py:flow`` (relative to the deployment file) or ``package.module:flow``."""
    from prefect.utilities.importtools import import_object

    try:
        return import_object(entrypoint)
    except (ImportError, AttributeError, FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"prefect.yaml: entrypoint {entrypoint!r} cannot be loaded: {exc}") from None


def load_deployments(prefect_yaml: Path, names: list[str] | None = None) -> list[Any]:
    """Runner deployments built from ``prefect.yaml`` (all, or those in ``names``)."""
    try:
        spec = yaml.safe_load(prefect_yaml.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{prefect_yaml}: {exc}") from None
    out = []
    for d in spec.get("deployments") or []:
        if names and d["name"] not in names:
            continue
        crons = [s["cron"] for s in d.get("schedules") or [] if "cron" in s]
        out.append(
            _flow(d["entrypoint"]).to_deployment(
                name=d["name"],
                parameters=d.get("parameters"),
                cron=crons or None,
                description=d.get("description"),
                tags=d.get("tags"),
                concurrency_limit=d.get("concurrency_limit"),
            )
        )
    if not out:
        raise ConfigError(f"{prefect_yaml}: no deployments matched {names or 'any name'}")
    return out


def serve(prefect_yaml: Path, names: list[str] | None = None, limit: int | None = None) -> None:
    """Serve the deployments until interrupted."""
    from prefect import serve as prefect_serve

    prefect_serve(*load_deployments(prefect_yaml, names), limit=limit)
