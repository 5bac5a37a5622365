"""Validation of request arguments (the `args` object of a frame)."""

from __future__ import annotations

from typing import Any

from agentchat.errors import BadRequest

_MISSING = object()


class Args:
    """Typed access to a request's `args`; a wrong type is a BadRequest naming the field."""

    def __init__(self, raw: dict[str, Any]) -> None:
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
