"""The tests' protocol client: send requests, collect replies by id, over either transport.

`WireClient` holds the request/reply logic of docs/PROTOCOL.md; a transport
moves text frames. `InProcessSocket` wraps channels' WebsocketCommunicator
(the real ASGI application in this process), `RealSocket` a `websockets`
connection to a real server. Agents that only need the protocol done for them
use `agentchat_client.AgentChatClient` instead.
"""

import asyncio
import json
import uuid
from typing import Any


class InProcessSocket:
    """A WebSocket on the ASGI application of this process (channels.testing.WebsocketCommunicator)."""

    def __init__(self, communicator) -> None:
        self.communicator = communicator

    async def send(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.communicator.send_to(bytes_data=data)

    async def receive(self, timeout: float) -> str:
        return await self.communicator.receive_from(timeout=timeout)

    async def nothing(self, timeout: float) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


class RealSocket:
    """A `websockets` connection to a real server."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.early: list[str] = []  # frames that arrived while checking that nothing would

    @classmethod
    async def open(cls, url: str) -> "RealSocket":
        import websockets

        return cls(await websockets.connect(url, open_timeout=10))

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send(data)

    async def receive(self, timeout: float) -> str:
        if self.early:
            return self.early.pop(0)
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def nothing(self, timeout: float) -> bool:
        if self.early:
            return False
        try:
            self.early.append(await asyncio.wait_for(self.ws.recv(), timeout))
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        await self.ws.close()


class WireClient:
    """A test agent: send requests, collect replies by id."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.replies: dict[Any, dict] = {}
        self.sent = 0

    @classmethod
    async def over_websocket(cls, url: str) -> "WireClient":
        return cls(await RealSocket.open(url))

    async def send(self, op: str, args: dict | None = None, *, id: Any = None) -> Any:
        """Send a request without waiting for its reply; return its id."""
        if id is None:
            self.sent += 1
            id = f"r{self.sent}"
        frame = {"id": id, "op": op}
        if args is not None:
            frame["args"] = args
        await self.socket.send(json.dumps(frame))
        return id

    async def send_raw(self, text: str) -> None:
        """Send a text frame as it is (not necessarily JSON, not necessarily a request)."""
        await self.socket.send(text)

    async def send_binary(self, data: bytes) -> None:
        """Send a binary frame (the protocol speaks text frames only)."""
        await self.socket.send_bytes(data)

    async def next_reply(self, timeout: float = 10) -> dict:
        return json.loads(await self.socket.receive(timeout))

    async def reply(self, id: Any, timeout: float = 10) -> dict:
        """The reply to request `id`; replies to other requests that arrive first are kept for later."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while id not in self.replies:
            reply = await self.next_reply(timeout=max(0.01, deadline - loop.time()))
            self.replies[reply["id"]] = reply
        return self.replies.pop(id)

    async def call(self, op: str, args: dict | None = None, timeout: float = 10) -> dict:
        """Send a request and return its result; fail the test on an error reply."""
        reply = await self.reply(await self.send(op, args), timeout=timeout)
        assert reply["ok"], reply
        return reply["result"]

    async def error(self, op: str, args: dict | None = None, timeout: float = 10) -> dict:
        """Send a request that must fail and return its error."""
        reply = await self.reply(await self.send(op, args), timeout=timeout)
        assert not reply["ok"], reply
        return reply["error"]

    async def nothing(self, timeout: float = 0.2) -> bool:
        """True when no frame arrives within `timeout`."""
        return await self.socket.nothing(timeout)

    async def close(self) -> None:
        await self.socket.close()


async def registered(connect, ide: str = "VS Code", model: str = "GPT") -> tuple[WireClient, dict]:
    """A client opened with the `connect` fixture and registered as an agent; its agent_register result."""
    client = await connect()
    result = await client.call("agent_register", {"ide": ide, "model": model})
    return client, result


def post_args(thread_id: str, content: str, seq: int, token: str, **extra) -> dict:
    """msg_post's arguments with the sync context."""
    return {"thread_id": thread_id, "content": content, "expected_last_seq": seq, "reply_token": token, **extra}


# --- the shapes of replies (docs/PROTOCOL.md, "Objects") ----------------------------

AGENT_KEYS = {
    "agent_id",
    "name",
    "display_name",
    "ide",
    "model",
    "description",
    "capabilities",
    "is_online",
    "last_heartbeat",
    "last_activity",
    "last_activity_at",
    "registered_at",
}
THREAD_KEYS = {
    "administrator_agent_id",
    "thread_id",
    "topic",
    "status",
    "created_at",
    "updated_at",
    "closed_at",
    "summary",
    "system_prompt",
    "template_id",
    "metadata",
    "last_seq",
    "creator_agent_id",
}
MESSAGE_KEYS = {
    "msg_id",
    "thread_id",
    "seq",
    "author_id",
    "author_name",
    "role",
    "content",
    "priority",
    "reply_to_msg_id",
    "metadata",
    "created_at",
    "edited_at",
    "edit_version",
}
UNKNOWN_ID = str(uuid.uuid4())


def assert_sync_context(result: dict, current_seq: int) -> None:
    """`result` carries a sync context (current_seq, reply_token, reply_window) at `current_seq`."""
    assert result["current_seq"] == current_seq
    assert isinstance(result["reply_token"], str) and result["reply_token"]
    assert set(result["reply_window"]) == {"expires_at", "max_new_messages"}
    assert result["reply_window"]["expires_at"].endswith(("Z", "+00:00"))


async def new_thread(client: WireClient, topic: str = "plan", **args) -> dict:
    """thread_create's result."""
    return await client.call("thread_create", {"topic": topic, **args})


async def add_human_messages(thread_id: str, count: int) -> None:
    """`count` messages posted by a human (through the admin's domain call) into the thread."""
    from channels.db import database_sync_to_async

    from threads import services
    from threads.models import Thread

    def add() -> None:
        thread = Thread.objects.get(pk=thread_id)
        for n in range(1, count + 1):
            services.post_human_message(thread=thread, content=f"note {n}", author_name="Ada")

    await database_sync_to_async(add)()


async def presence_event(channel: str, agent_id: str, kind: str = "agent.presence") -> dict:
    """The next event of `kind` about `agent_id` on a channel-layer channel (other tests may share the layer)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    while True:
        event = await asyncio.wait_for(layer.receive(channel), timeout=5)
        if event.get("type") == kind and event.get("agent_id") == agent_id:
            return event


def waiting_room_tasks() -> list[asyncio.Task]:
    """The running tasks of this process's waiting room (named "agentchat-waiters-...")."""
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("agentchat-waiters")]
