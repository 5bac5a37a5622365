"""The tests' protocol client: send requests, collect replies by id, over either transport.

`WireClient` holds the request/reply logic of docs/PROTOCOL.md; a transport
moves text frames. `InProcessSocket` wraps channels' WebsocketCommunicator
(the real ASGI application in this process), `RealSocket` a `websockets`
connection to a real server. Agents that only need the protocol done for them
use `agentchat_client.AgentChatClient` instead.
"""

import asyncio
import json
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
