"""
The agent WebSocket at /ws/agent/ (PROTOCOL.md, Transport).

It translates frames and nothing else: `receive` parses and checks a frame,
then runs the request as its own task (so a pending msg_wait never blocks the
socket) through `agentchat.ops.dispatch`, where the request becomes a domain
call; the result or error goes back as a reply with the request's id.
"""

import asyncio
import json
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agentchat import ops
from agentchat.errors import BadRequest, PayloadTooLarge, ProtocolError


class AgentConsumer(AsyncWebsocketConsumer):
    # No channel per socket: the process's waiting room (threads/waiting_room.py)
    # holds the one subscription that wakes every wait. An alias that names no
    # layer makes Channels skip the per-socket channel and its receive loop.
    channel_layer_alias = "agentchat-no-per-socket-channel"

    async def connect(self) -> None:
        # The client's address as the server reports it (daphne with
        # --proxy-headers puts the forwarded one here).
        client = self.scope.get("client")
        self.session = ops.Session(client_address=str(client[0])[:100] if client else None)
        self.requests: set[asyncio.Task] = set()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        # Cancels pending waits; their `finally` blocks leave the waiting room.
        for task in list(self.requests):
            task.cancel()
        await asyncio.gather(*self.requests, return_exceptions=True)
        await self.session.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.reply_error(None, BadRequest("Frames must be JSON text, not binary."))
            return
        limit = settings.AGENTCHAT["MAX_FRAME_BYTES"]
        if len(text_data) > limit or len(text_data.encode()) > limit:
            await self.reply_error(None, PayloadTooLarge(f"Frames are limited to {limit} bytes.", limit=limit))
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.reply_error(None, BadRequest("The frame is not valid JSON."))
            return
        if not isinstance(frame, dict):
            await self.reply_error(None, BadRequest("A frame must be a JSON object."))
            return
        request_id = frame.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int, type(None))):
            await self.reply_error(None, BadRequest("id must be a string or an integer.", field="id"))
            return
        name, args = frame.get("op"), frame.get("args", {})
        if not isinstance(name, str):
            await self.reply_error(request_id, BadRequest("The frame has no op.", field="op"))
            return
        if args is None:
            args = {}
        if not isinstance(args, dict):
            await self.reply_error(request_id, BadRequest("args must be an object.", field="args"))
            return
        task = asyncio.create_task(self.handle(request_id, name, args))
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)

    async def handle(self, request_id: Any, name: str, args: dict[str, Any]) -> None:
        try:
            result = await ops.dispatch(self.session, name, args)
        except ProtocolError as error:
            await self.reply_error(request_id, error)
        else:
            await self.send(text_data=json.dumps({"id": request_id, "ok": True, "result": result}))

    async def reply_error(self, request_id: Any, error: ProtocolError) -> None:
        await self.send(text_data=json.dumps({"id": request_id, "ok": False, "error": error.as_dict()}))
