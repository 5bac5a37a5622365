"""
The WebSocket limits of the server process, and the JSON of replies.

daphne (through autobahn) refuses any WebSocket message over its
`websocket_max_message_size`, in both directions: an incoming one fails the
connection, an outgoing one is dropped with nothing but a log line. So the
transport's limit must be the largest reply the bus sends
(`AGENTCHAT["MAX_REPLY_BYTES"]`), which every list and wait stays under, and at
least the largest frame the bus reads (`MAX_FRAME_BYTES`); `agentchat.checks`
refuses settings that break this.

`configure_daphne` makes it so however the server is started (`daphne`,
`manage.py runserver`): daphne's WebSocket factory takes its limits from the
settings, whatever `--websocket-max-message-size` says, and fails an
oversized frame with a close frame 1009 instead of dropping the TCP
connection (autobahn's `failByDrop`, on by default, answers with a reset).
"""

import json
import logging
from typing import Any

from django.conf import settings

logger = logging.getLogger("agentchat.transport")

# Room in a reply for everything but its list or wait payload: the envelope
# (`{"id": ..., "ok": true, "result": {...}}`, an id of up to MAX_ID_CHARS
# characters at 6 bytes each when escaped), a sync context, `current_seq`,
# `has_more`, `next_cursor` and the like.
REPLY_OVERHEAD_BYTES = 4096
# Request ids come back on every reply; a longer one is refused.
MAX_ID_CHARS = 200


def transport_max_message_bytes() -> int:
    """The WebSocket message limit given to daphne: the largest reply, and never below the largest frame."""
    conf = settings.AGENTCHAT
    return max(conf["MAX_REPLY_BYTES"], conf["MAX_FRAME_BYTES"])


def reply_budget() -> int:
    """Bytes a reply's payload (its messages, threads or agents) may use."""
    return settings.AGENTCHAT["MAX_REPLY_BYTES"] - REPLY_OVERHEAD_BYTES


class EncodedList(list):
    """A list of JSON objects encoded once, however many replies carry it.

    A post that wakes a thousand waiters hands each of them the same new
    messages: `encode_reply` splices this text into each reply instead of
    serializing the messages a thousand times. It is still a plain list for
    anything else (the MCP transport, tests).
    """

    @property
    def encoded(self) -> str:
        text = getattr(self, "_encoded", None)
        if text is None:
            text = self._encoded = dumps(list(self))
        return text


def dumps(value: Any) -> str:
    """JSON for the wire: UTF-8 text without `\\u` escapes, compact.

    A string that cannot be UTF-8 (a lone surrogate stored before the edge
    refused them) falls back to ASCII escapes: still valid JSON, and still sent.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(value, separators=(",", ":"))
    return text


def size(value: Any) -> int:
    """Bytes `value` takes in a reply (as `dumps` writes it)."""
    return len(dumps(value).encode("utf-8", "surrogatepass"))


def take_within(
    items: list[dict[str, Any]], budget: int, *, newest_first: bool = False, at_least_one: bool = True
) -> list[dict[str, Any]]:
    """The longest run of `items` (from the start, or from the end with `newest_first`) whose JSON fits `budget`.

    With `at_least_one`, the first item is taken whatever its size: a page
    that could never move past an item would be worse than one reply too
    large, which `encode_reply` then turns into an error reply.
    """
    order = reversed(items) if newest_first else items
    taken: list[dict[str, Any]] = []
    used = 2  # []
    for item in order:
        cost = size(item) + 1  # the comma
        if used + cost > budget and (taken or not at_least_one):
            break
        taken.append(item)
        used += cost
    return list(reversed(taken)) if newest_first else taken


_configured = False


# The listen backlog of daphne's TCP endpoints (Twisted's default is 50). A
# hundred clients connecting at once (an MCP client opens connections per
# request) overflow 50: the kernel drops their SYNs and they retry after 1 s,
# then 3 s. The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024


def with_backlog(build: Any) -> Any:
    """Wrap daphne's endpoint builder so that its TCP endpoints listen with LISTEN_BACKLOG."""

    def build_endpoint_description_strings(*args: Any, **kwargs: Any) -> list[str]:
        strings = build(*args, **kwargs)
        return [f"{s}:backlog={LISTEN_BACKLOG}" if s.startswith("tcp:") and "backlog=" not in s else s for s in strings]

    return build_endpoint_description_strings


def configure_daphne() -> None:
    """Give daphne's WebSocket factory the settings' limits and a close 1009 for an oversized frame.

    Also its TCP endpoints a listen backlog of LISTEN_BACKLOG (`daphne -b/-p`
    and `runserver`; the application is loaded before daphne builds them).
    And no colours in autobahn's debug log lines: it formats their arguments
    for every frame sent, logged or not, and colouring them with click was
    about a twentieth of the server's time per woken waiter.
    """
    global _configured
    if _configured:
        return
    try:
        import autobahn.util
        import daphne.cli
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:  # pragma: no cover - another ASGI server
        return
    daphne.cli.build_endpoint_description_strings = with_backlog(daphne.cli.build_endpoint_description_strings)
    try:
        import daphne.management.commands.runserver as runserver

        runserver.build_endpoint_description_strings = with_backlog(runserver.build_endpoint_description_strings)
    except ImportError:  # pragma: no cover - Django's own runserver
        pass
    original = WebSocketFactory.setProtocolOptions

    def set_protocol_options(factory: Any, **options: Any) -> None:
        limit = transport_max_message_bytes()
        requested = options.get("maxMessagePayloadSize")
        if requested not in (None, limit):
            logger.info("WebSocket messages are limited to %d bytes (AGENTCHAT settings), not %d.", limit, requested)
        options.update(maxMessagePayloadSize=limit, maxFramePayloadSize=limit, failByDrop=False)
        original(factory, **options)

    autobahn.util._HAS_CLICK = False
    WebSocketFactory.setProtocolOptions = set_protocol_options
    _configured = True


def encode_reply(request_id: Any, *, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> str:
    """The text of a reply frame, never over MAX_REPLY_BYTES.

    A result too large for the transport (which would drop it silently) is
    replaced by a `PayloadTooLarge` error reply carrying the same id.
    """
    if error is not None:
        return dumps({"id": request_id, "ok": False, "error": error})
    text = _dumps_with_shared_lists({"id": request_id, "ok": True, "result": result})
    limit = settings.AGENTCHAT["MAX_REPLY_BYTES"]
    # A character takes at most 4 bytes: most replies need no encoding to be measured.
    length = len(text) if len(text) * 4 <= limit else len(text.encode("utf-8", "surrogatepass"))
    if length > limit:
        logger.warning("A reply of %d bytes was over the %d-byte limit; an error was sent instead.", length, limit)
        error = {
            "code": "PayloadTooLarge",
            "message": f"The reply would be larger than {limit} bytes; ask for less (a smaller limit).",
            "limit": limit,
        }
        text = dumps({"id": request_id, "ok": False, "error": error})
    return text


def _dumps_with_shared_lists(reply: dict[str, Any]) -> str:
    """`dumps(reply)`, with the EncodedList values of its result spliced in as already encoded text.

    Each is replaced by a placeholder string that no stored value can equal
    (it starts with a NUL character, which the edge refuses in any argument),
    then the placeholder's JSON is replaced by the list's text.
    """
    result = reply.get("result")
    shared = {key: value for key, value in result.items() if isinstance(value, EncodedList)} if result else {}
    if not shared:
        return dumps(reply)
    placeholders = {key: f"\x00shared-{id(value)}-{key}" for key, value in shared.items()}
    text = dumps({**reply, "result": {**result, **placeholders}})
    for key, value in shared.items():
        text = text.replace(dumps(placeholders[key]), value.encoded, 1)
    return text
