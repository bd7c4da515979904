"""Run-config files: YAML read and validated by pydantic, errors that name the file and key.

Committed configs hold no secrets. Credentials come from the environment
(``QUANT_API_KEY``, ``QUANT_ORGANIZATION``, ``QUANT_BASE_URL``) or a Prefect Secret block named in
``api.secret_block``. Each stage keeps its own config model next to its code
(``embed/config.py``, ``render/config.py``, ``enrich/config.py``, ``client/config.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from quant_batch.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=BaseModel)


def format_validation_error(source: str, exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``source: dotted.key: message``, plus the field's description for a bad value."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if str(p) not in ("folder", "table") or p == err["loc"][-1])
        line = f"{source}: {key or '(top level)'}: {err['msg']}"
        about = field_description(model, err["loc"]) if model is not None and err["type"] != "extra_forbidden" else None
        lines.append(f"{line} ({about})" if about else line)
    return "\n".join(dict.fromkeys(lines))


def field_description(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """The description of the field at ``loc``; list indexes and union tags in ``loc`` are skipped."""
    candidates: list[type[BaseModel]] = [model]
    description = None
    for part in loc:
        found = next((m.model_fields[part] for m in candidates if isinstance(part, str) and part in m.model_fields), None)
        if found is None:
            continue  # a list index, a union tag ("folder") or a validator name
        description = found.description
        candidates = list(_models_in(found.annotation))
    return description


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """Every pydantic model inside a type (``tuple[Source, ...]``, ``X | None``, ``Annotated``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)


def parse_config(model: type[C], data: dict[str, Any], *, source: str) -> C:
    """Validate ``data``; a failure names ``source`` and every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, model)) from None


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
