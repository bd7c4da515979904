"""Run-config files: YAML read and validated by pydantic, errors that name the file and key.

Committed configs hold no secrets. Credentials come from the environment
(``QUANT_API_KEY``, ``QUANT_ORGANIZATION``, ``QUANT_BASE_URL``) or a Prefect Secret block named in
``api.secret_block``. Each stage keeps its own config model next to its code
(``embed/config.py``, ``render/config.py``, ``enrich/config.py``, ``client/config.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from quant_batch.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=BaseModel)


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if str(p) not in ("folder", "table") or p == err["loc"][-1])
        lines.append(f"{source}: {key or '(top level)'}: {err['msg']}")
    return "\n".join(dict.fromkeys(lines))


def parse_config(model: type[C], data: dict[str, Any], *, source: str) -> C:
    """Validate ``data``; a failure names ``source`` and every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data
