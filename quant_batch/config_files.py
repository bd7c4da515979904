"""Run-config files: YAML read and validated by pydantic, errors that name the file and key.

Committed configs hold no secrets. Credentials come from the environment
(``QUANT_API_KEY``, ``QUANT_ORGANIZATION``, ``QUANT_BASE_URL``) or a Prefect Secret block named in
``api.secret_block``. Each stage keeps its own config model next to its code
(``embed/config.py``, ``render/config.py``, ``enrich/config.py``, ``client/config.py``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from quant_batch.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=BaseModel)


def format_validation_error(source: str, exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One ``source: key: problem`` line per error.

    An unknown key gets the closest known one; a bad value gets the field's description.
    """
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if str(p) not in ("folder", "table") or p == err["loc"][-1])
        line = f"{source}: {key or '(top level)'}: {err['msg']}"
        if model is not None and err["type"] == "extra_forbidden" and err["loc"]:
            line = f"{source}: {key}: {_unknown_key(model, err['loc'])}"
        elif model is not None and (about := field_description(model, err["loc"])):
            line = f"{line} ({about})"
        lines.append(line)
    return "\n".join(dict.fromkeys(lines))


def field_description(model: type[BaseModel], loc: tuple[int | str, ...]) -> str | None:
    """The description of the field at ``loc``; list indexes and union tags in ``loc`` are skipped."""
    candidates: list[type[BaseModel]] = [model]
    description = None
    for part in loc:
        found = next(
            (m.model_fields[part] for m in candidates if isinstance(part, str) and part in m.model_fields), None
        )
        if found is None:
            continue  # a list index, a union tag ("folder") or a validator name
        description = found.description
        candidates = _models_in(found.annotation)
    return description


def _unknown_key(model: type[BaseModel], loc: tuple) -> str:
    allowed = sorted(_fields_at(model, loc[:-1]))
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown setting (did you mean '{close[0]}'?)"
    return f"unknown setting; allowed here: {', '.join(allowed)}" if allowed else "unknown setting"


def _fields_at(model: type[BaseModel], path: tuple) -> set[str]:
    """The field names allowed at ``path`` below ``model`` (list indexes and union tags are skipped)."""
    models = [model]
    for step in path:
        fields = [m.model_fields[step] for m in models if isinstance(step, str) and step in m.model_fields]
        if fields:
            models = [sub for f in fields for sub in _models_in(f.annotation)]
    return {name for m in models for name in m.model_fields}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every model class inside a type: ``tuple[A | B, ...]``, ``Annotated[A, ...]``, ``A | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def parse_config(model: type[C], data: dict[str, Any], *, source: str) -> C:
    """Validate ``data``; a failure names ``source`` and every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, model)) from None


def load_yaml(path: Path) -> Any:
    """Any YAML document; a file that is missing or not YAML raises with ``file:line``."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML run config: a mapping of settings."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"{path}:1: expected a mapping of settings (key: value lines) at the top level, found {found}"
        )
    return data
