"""Validation of request arguments (the `args` object of a frame)."""

from __future__ import annotations

import json
import math
from typing import Any

from agentchat.errors import BadRequest

_MISSING = object()

# How deep an argument's JSON may nest (metadata is a few levels in practice).
# Deeper values are refused before anything, the database included, sees them.
MAX_JSON_DEPTH = 32


class NonFiniteNumber:
    """NaN, Infinity or -Infinity in a frame: JSON has no such numbers, so `check_value` refuses them."""

    def __init__(self, name: str) -> None:
        self.name = name


def parse_frame(text: str) -> Any:
    """Parse a frame's JSON; any failure (nesting too deep for the parser included) is a BadRequest."""
    try:
        return json.loads(text, parse_constant=NonFiniteNumber)
    except RecursionError:
        raise BadRequest(f"The frame nests too deeply (at most {MAX_JSON_DEPTH} levels in args).") from None
    except ValueError:  # JSONDecodeError, or an integer too long to convert
        raise BadRequest("The frame is not valid JSON.") from None


def check_string(value: str, field: str) -> None:
    """Refuse what no database stores alike: NUL (PostgreSQL refuses it) and lone surrogates (not UTF-8)."""
    if "\x00" in value:
        raise BadRequest(f"{field} must not contain NUL characters.", field=field)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise BadRequest(f"{field} must be valid Unicode (no lone surrogates).", field=field) from None


def check_value(value: Any, field: str) -> None:
    """Refuse a JSON value the bus cannot store the same way on every database.

    Strings (and object keys) without NUL or lone surrogates, finite numbers,
    at most MAX_JSON_DEPTH levels of nesting. Walks without recursion, so any
    depth is refused cleanly; the error names the innermost field.
    """
    stack = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            check_string(item, path)
        elif isinstance(item, NonFiniteNumber) or (isinstance(item, float) and not math.isfinite(item)):
            raise BadRequest(f"{path} must be a finite number (JSON has no NaN or Infinity).", field=path)
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise BadRequest(f"{field} nests deeper than {MAX_JSON_DEPTH} levels.", field=field)
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise BadRequest(f"{path} must have string keys.", field=path)
                    check_string(key, f"{path}.{key}" if key.isprintable() and key.isascii() else path)
                    stack.append((child, f"{path}.{key}", depth + 1))
            else:
                stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))


class Args:
    """Typed access to a request's `args`; a wrong type is a BadRequest naming the field."""

    def __init__(self, raw: dict[str, Any]) -> None:
        for name, value in raw.items():
            check_string(name, "args")
            check_value(value, name)
        self.raw = raw

    def _get(self, name: str, required: bool) -> Any:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise BadRequest(f"{name} is required.", field=name)
            return _MISSING
        return value

    def str(self, name: str, *, required: bool = False, default: str | None = None, max_length: int = 10_000) -> Any:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string.", field=name)
        if len(value) > max_length:
            raise BadRequest(f"{name} is longer than {max_length} characters.", field=name)
        return value

    def text(self, name: str, *, required: bool = False) -> Any:
        """A string of any length (limits are the domain's business)."""
        return self.str(name, required=required, max_length=10**9)

    def id(self, name: str, *, required: bool = False) -> Any:
        """An object id (a string; integers are accepted and turned into strings)."""
        value = self._get(name, required)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise BadRequest(f"{name} must be a string id.", field=name)
        return str(value)

    def int(
        self,
        name: str,
        *,
        required: bool = False,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> Any:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{name} must be an integer.", field=name)
        if minimum is not None and value < minimum:
            raise BadRequest(f"{name} must be at least {minimum}.", field=name)
        if maximum is not None and value > maximum:
            raise BadRequest(f"{name} must be at most {maximum}.", field=name)
        return value

    def limit(self, name: str, *, default: int, maximum: int) -> int:
        """A page size: at least 1; a value over the maximum is clamped, not refused."""
        return min(self.int(name, default=default, minimum=1), maximum)

    def choice(self, name: str, choices: list[str], *, required: bool = False, default: str | None = None) -> Any:
        """One of a few strings."""
        value = self.str(name, required=required, default=default, max_length=max(map(len, choices)))
        if value is not None and value not in choices:
            raise BadRequest(f"{name} must be one of {', '.join(choices)}.", field=name)
        return value

    def bool(self, name: str, *, required: bool = False, default: bool | None = None) -> Any:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise BadRequest(f"{name} must be true or false.", field=name)
        return value

    def object(self, name: str) -> Any:
        value = self._get(name, False)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            raise BadRequest(f"{name} must be an object.", field=name)
        return value

    def str_list(self, name: str) -> Any:
        value = self._get(name, False)
        if value is _MISSING:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise BadRequest(f"{name} must be a list of strings.", field=name)
        return value
