"""
Errors of the wire protocol.

Domain functions raise these; the consumer turns them into
`{"ok": false, "error": {"code", "message", ...}}` replies. Anything else that
escapes a domain function is a bug and reaches the client as `Internal`.
"""

from typing import Any


class ProtocolError(Exception):
    code = "Internal"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class BadRequest(ProtocolError):
    code = "BadRequest"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        if field is not None:
            extra["field"] = field
        super().__init__(message, **extra)


class Unauthenticated(ProtocolError):
    code = "Unauthenticated"


class InvalidCredentials(ProtocolError):
    code = "InvalidCredentials"


class NotFound(ProtocolError):
    code = "NotFound"

    def __init__(self, resource: str, message: str | None = None) -> None:
        super().__init__(message or f"No such {resource}.", resource=resource)


class Forbidden(ProtocolError):
    code = "Forbidden"


class ThreadClosed(ProtocolError):
    code = "ThreadClosed"


class InvalidTransition(ProtocolError):
    code = "InvalidTransition"


class Conflict(ProtocolError):
    code = "Conflict"


class MissingSyncFields(ProtocolError):
    code = "MissingSyncFields"


class SeqMismatch(ProtocolError):
    code = "SeqMismatch"


class ReplyTokenInvalid(ProtocolError):
    code = "ReplyTokenInvalid"


class ReplyTokenReplay(ProtocolError):
    code = "ReplyTokenReplay"


class ReplyTokenExpired(ProtocolError):
    code = "ReplyTokenExpired"


class RateLimited(ProtocolError):
    code = "RateLimited"


class ContentBlocked(ProtocolError):
    code = "ContentBlocked"


class PayloadTooLarge(ProtocolError):
    code = "PayloadTooLarge"
