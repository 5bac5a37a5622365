"""
The agent WebSocket at /ws/agent/ (PROTOCOL.md, Transport).

It translates frames and nothing else: `receive` parses and checks a frame,
then runs the request as its own task (so a pending msg_wait never blocks the
socket) through `agentchat.ops.dispatch`, where the request becomes a domain
call; the result or error goes back as a reply with the request's id.
"""

import asyncio
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agentchat import ops, quiet_gc
from agentchat.errors import BadRequest, PayloadTooLarge, ProtocolError
from agentchat.protocol import check_string, parse_frame
from agentchat.transport import MAX_ID_CHARS, encode_reply

logger = logging.getLogger("agentchat.consumers")


class AgentConsumer(AsyncWebsocketConsumer):
    # No channel per socket: the process's waiting room (threads/waiting_room.py)
    # holds the one subscription that wakes every wait. An alias that names no
    # layer makes Channels skip the per-socket channel and its receive loop.
    channel_layer_alias = "agentchat-no-per-socket-channel"

    async def __call__(self, scope, receive, send) -> None:
        self.requests: set[asyncio.Task] = set()
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the socket ends (a disconnect, or an error that escaped a
            # handler), its requests end with it: a pending wait leaves the
            # waiting room now, not at its timeout.
            await self.cancel_requests()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its per-frame hop to the database thread.

        `AsyncConsumer.dispatch` awaits `aclose_old_connections()` before every
        handler: a trip to the thread that runs the ORM, for every frame, even
        one that needs no database. Here nothing touches the database outside
        `database_sync_to_async` (agentchat/ops.py, threads/waiting_room.py),
        which closes an unusable or expired connection before and after each
        call on that thread: a connection lost meanwhile is still dropped
        before the next request uses it, and the request that found it broken
        fails retryable (`ops.dispatch`). So the hop only cost time.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        # The client's address as the server reports it (daphne with
        # --proxy-headers puts the forwarded one here).
        client = self.scope.get("client")
        self.session = ops.Session(client_address=str(client[0])[:100] if client else None)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.cancel_requests()

    async def cancel_requests(self) -> None:
        """Cancel pending requests; their `finally` blocks leave the waiting room."""
        for task in list(self.requests):
            task.cancel()
        await asyncio.gather(*self.requests, return_exceptions=True)
        await self.session.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        quiet_gc.activity()
        try:
            request_id, name, args = self.parse(text_data)
        except ProtocolError as error:
            await self.reply_error(getattr(error, "request_id", None), error)
            return
        task = asyncio.create_task(self.handle(request_id, name, args))
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)

    def parse(self, text_data: str | None) -> tuple[Any, str, dict[str, Any]]:
        """A frame's id, op and args; a ProtocolError (with the id, when one was read) for anything else."""
        if text_data is None:
            raise BadRequest("Frames must be JSON text, not binary.")
        limit = settings.AGENTCHAT["MAX_FRAME_BYTES"]
        if len(text_data) > limit or len(text_data.encode("utf-8", "surrogatepass")) > limit:
            raise PayloadTooLarge(f"Frames are limited to {limit} bytes.", limit=limit)
        frame = parse_frame(text_data)
        if not isinstance(frame, dict):
            raise BadRequest("A frame must be a JSON object.")
        request_id = frame.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int, type(None))):
            raise BadRequest("id must be a string or an integer.", field="id")
        if len(str(request_id)) > MAX_ID_CHARS:
            raise BadRequest(f"id is longer than {MAX_ID_CHARS} characters.", field="id")
        if isinstance(request_id, str):
            check_string(request_id, "id")
        name, args = frame.get("op"), frame.get("args", {})
        try:
            if not isinstance(name, str):
                raise BadRequest("The frame has no op.", field="op")
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise BadRequest("args must be an object.", field="args")
        except ProtocolError as error:
            error.request_id = request_id
            raise
        return request_id, name, args

    async def handle(self, request_id: Any, name: str, args: dict[str, Any]) -> None:
        try:
            result = await ops.dispatch(self.session, name, args)
        except ProtocolError as error:
            await self.reply_error(request_id, error)
        else:
            await self.reply(encode_reply(request_id, result=result))

    async def reply_error(self, request_id: Any, error: ProtocolError) -> None:
        await self.reply(encode_reply(request_id, error=error.as_dict()))

    async def reply(self, text: str) -> None:
        try:
            await self.send(text_data=text)
        except Exception:  # the socket is gone: nobody to tell
            logger.warning("A reply could not be sent", exc_info=True)
