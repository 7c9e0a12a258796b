"""Turn parsed TOML into frozen dataclasses, checking every key and value.

A dataclass field may carry metadata: ``choices`` (allowed values), ``min``/``max``
(numeric bounds), ``text`` (the form a string must have, one of :data:`TEXT_FORMS`) and
``help`` (one line shown in errors and ``config show``). Unknown keys and wrong types
raise :class:`ConfigError` naming the file and key; so do the checks a dataclass makes
in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, get_args, get_origin

from scanner.errors import ConfigError

T = TypeVar("T")

# Strings that end up in SMTP replies or mail headers: a CR or LF there would start a
# new reply line or header field. Each form: (pattern of a non-empty value, what it is).
TEXT_FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "hostname": (re.compile(r"(?=.{1,253}$)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?"),
                 "a host name (letters, digits, '-', '_' and dots)"),
    "header_name": (re.compile(r"[!-9;-~]+"),
                    "a header field name (printable ASCII, no colon or space)"),
    "header_text": (re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*"),
                    "one line of header text (no line breaks or control characters)"),
    "local_part": (re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"),
                   "part of an address's local part (letters, digits and "
                   "!#$%&'*+/=?^_`{|}~.-; no '@', spaces or quotes)"),
}


def build(cls: type[T], data: Mapping[str, Any], where: str, source: str) -> T:
    """Build dataclass ``cls`` from ``data``; ``where`` is the key path, ``source`` the file."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: [{where}] must be a table, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in fields:
            allowed = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(
                f"{source}: unknown key '{_join(where, key)}'; allowed keys here: {allowed}"
            )
        f = fields[name]
        kwargs[name] = _convert(hints[name], value, _join(where, key), source, f.metadata)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{source}: [{where}] {exc}") from None
    except ConfigError as exc:  # a check of __post_init__, which knows no file name
        if str(exc).startswith(f"{source}:"):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _convert(tp: Any, value: Any, key: str, source: str, meta: Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, key, source, meta)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, source)  # type: ignore[arg-type]
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be an array, got {_kind(value)}")
        item_tp = get_args(tp)[0]
        return tuple(
            _convert(item_tp, v, f"{key}[{i}]", source, meta) for i, v in enumerate(value)
        )
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a table, got {_kind(value)}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is not Any:
            return types.MappingProxyType({
                k: _convert(args[1], v, f'{key}."{k}"', source, {}) for k, v in value.items()})
        return types.MappingProxyType(dict(value))
    return _scalar(tp, value, key, source, meta)


def _scalar(tp: Any, value: Any, key: str, source: str, meta: Mapping[str, Any]) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):  # TOML has inf and nan
            raise ConfigError(f"{source}: '{key}' must be a finite number, got {value!r}")
    elif tp is str and not isinstance(value, str):
        raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
    form = meta.get("text")
    if form is not None and value:
        pattern, what = TEXT_FORMS[form]
        if not pattern.fullmatch(value):
            raise ConfigError(f"{source}: '{key}' = {value!r} is not {what}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{source}: '{key}' = {value!r} is not allowed; use one of {allowed}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(f"{source}: '{key}' = {value!r} is too small; minimum is {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{source}: '{key}' = {value!r} is too large; maximum is {hi}")
    return value


def to_plain(obj: Any) -> Any:
    """The inverse of :func:`build`: dataclasses back to TOML-ready dicts and lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, tuple | list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def opt(default: Any, help: str = "", **meta: Any) -> Any:
    """A dataclass field with a default and validation metadata."""
    meta["help"] = help
    if isinstance(default, list | dict):
        factory = (lambda d=default: tuple(d)) if isinstance(default, list) else (
            lambda d=default: types.MappingProxyType(dict(d)))
        return dataclasses.field(default_factory=factory, metadata=meta)
    if dataclasses.is_dataclass(default) or callable(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
