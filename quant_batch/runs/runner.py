"""Prefect when there is a Prefect: decide whether a run goes through the flows or runs in-process.

A run goes through the Prefect flows when a Prefect API is configured (``PREFECT_API_URL`` in
the environment, the active profile, a ``prefect.toml``/``.env``/``pyproject.toml`` Prefect reads)
or when it is called from inside a running flow (it becomes a subflow), so it shows in the user's
Prefect UI; otherwise the same library code runs in this process,
because a temporary Prefect server costs 10-20 s per command. ``prefect=True/False`` forces it.

Importing ``prefect.settings`` alone costs about 2 s of CPU here, so the answer is taken from
the environment first, and Prefect's own settings are read only when a file that could configure
it exists (or Prefect is already imported, e.g. under ``prefect_test_harness``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from quant_batch.errors import ConfigError

Runner = Literal["prefect", "in-process"]

# what a run records in its summary (stats.runner); the flows set "prefect" around their body
RUNNER: ContextVar[Runner] = ContextVar("quant_batch_runner", default="in-process")

# who hears a flow's progress (done, total): a flow parameter cannot carry a callable, so the
# caller sets it around the call and the flow's progress reads it; scoped, never a module global
PROGRESS: ContextVar[Callable[[int, int], None] | None] = ContextVar("quant_batch_progress", default=None)


@contextmanager
def listening(on_progress: Callable[[int, int], None] | None) -> Iterator[None]:
    """Send the progress of the runs started inside this block to ``on_progress``."""
    token = PROGRESS.set(on_progress)
    try:
        yield
    finally:
        PROGRESS.reset(token)


# what the run was started on (a config, folder, table or manifest), for exact replay commands
TARGET: ContextVar[str | None] = ContextVar("quant_batch_target", default=None)


@contextmanager
def running_under(runner: Runner, target: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Record ``runner`` (and the ``target`` the run was started on) in the summaries of the runs
    started inside this block."""
    token = RUNNER.set(runner)
    target_token = TARGET.set(str(target) if target is not None else None)
    try:
        yield
    finally:
        TARGET.reset(target_token)
        RUNNER.reset(token)


def prefect_api_url() -> str | None:
    """The configured Prefect API URL, or None; never starts a server."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    if "prefect.settings" not in sys.modules and not _prefect_config_files():
        return None
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def _prefect_config_files() -> bool:
    """True when a file Prefect reads settings from could name an API URL."""
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    candidates = [
        (profiles, "PREFECT_API_URL"),
        (Path("prefect.toml"), "url"),
        (Path(".env"), "PREFECT_API_URL"),
        (Path("pyproject.toml"), "tool.prefect"),
    ]
    return any(_mentions(path, needle) for path, needle in candidates)


def _mentions(path: Path, needle: str) -> bool:
    try:
        return needle in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _inside_flow_run() -> bool:
    """Called from the user's own flow (even on a temporary server): run as its subflow."""
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def choose_runner(prefect: bool | None, *, task_runner: str = "threads", dask_address: str | None = None) -> Runner:
    """``prefect`` forces the choice; None follows whether a Prefect API is configured.

    Raises:
        ConfigError: Dask on an existing cluster without a Prefect API (every worker would start
            its own temporary server and the run would fail minutes later).
    """
    has_api = prefect_api_url() is not None or _inside_flow_run()
    if task_runner == "dask" and dask_address and not has_api and prefect is not False:
        raise ConfigError(
            f"task_runner: dask with dask_address {dask_address} needs a Prefect API that every Dask worker "
            "can reach: set PREFECT_API_URL (e.g. `prefect server start`), or run with --no-prefect "
            "(in-process threads, no Dask)"
        )
    if prefect is None:
        # the Dask task runner exists only in the flows: a LocalCluster run keeps using them
        return "prefect" if has_api or task_runner == "dask" else "in-process"
    return "prefect" if prefect else "in-process"
