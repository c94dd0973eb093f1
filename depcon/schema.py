"""Build frozen dataclasses from parsed YAML, strictly.

Every configuration file of the project (versions.yml, Pulumi.<stack>.yaml,
the inventory) goes through :func:`build`, so bad input fails the same way
everywhere: before anything changes, with the file, the dotted key and what
was wrong. Unknown keys are errors, not warnings: a typo in a pin must not
silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value a user can fix; the message names file and key."""

    def __init__(self, file: Path | str, key: str, problem: str) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {problem}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    args = ", ".join(_type_name(a) for a in typing.get_args(tp))
    return f"{getattr(origin, '__name__', str(origin))}[{args}]"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _convert(tp: Any, value: Any, file: Path | str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(non_none[0], value, file, path)
        raise TypeError(f"unsupported union {tp!r} at {path}")
    if origin in (list, dict):
        return _container(tp, value, file, path)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(file, path, f"must be one of {choices}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value, file, path)
    return _scalar(tp, value, file, path)


def _container(tp: Any, value: Any, file: Path | str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(file, path, f"must be a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, v, file, _join(path, i)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(file, path, f"must be a mapping, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            out[_convert(key_tp, k, file, path)] = _convert(val_tp, v, file, _join(path, str(k)))
        return out
    raise TypeError(f"unsupported container {_type_name(tp)} at {path}")


def _scalar(tp: Any, value: Any, file: Path | str, path: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, path, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        # YAML booleans are ints in Python; a pin of `true` is a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, path, f"must be an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            kind = type(value).__name__
            raise ConfigError(
                file, path, f"must be a string (quote it in YAML), got {kind} {value!r}"
            )
        if not value:
            raise ConfigError(file, path, "must not be empty")
        return value
    raise TypeError(f"unsupported field type {_type_name(tp)} at {path}")


def build(cls: type[T], data: Any, file: Path | str, path: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``; raise ConfigError on bad input.

    Field names map to keys with ``_`` (the YAML files use snake_case), except
    that a field's ``metadata["key"]`` overrides the key (Pulumi's camelCase).
    A dataclass ``__post_init__`` may raise ConfigError for cross-field rules.
    """
    if not isinstance(data, dict):
        raise ConfigError(file, path, f"must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.metadata.get("key", f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(file, _join(path, unknown[0]), f"unknown key (known keys: {known})")
    kwargs: dict[str, Any] = {}
    for key, field in fields.items():
        if key in data:
            kwargs[field.name] = _convert(hints[field.name], data[key], file, _join(path, key))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(file, _join(path, key), "is required but missing")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(file, path, str(exc)) from exc
