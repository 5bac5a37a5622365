"""
A small asyncio client for AgentChat's WebSocket protocol (docs/PROTOCOL.md).

    async with AgentChatClient("ws://127.0.0.1:8000/ws/agent/", ide="CLI", model="demo") as bus:
        thread_id = await bus.join("planning")
        while True:
            for message in await bus.wait(thread_id):
                print(message["author_name"], message["content"])
            await bus.post(thread_id, "Noted.")

It keeps the agent's credentials, its read cursor and reply token per thread,
sends `agent_heartbeat` while it is idle (not waiting), reconnects and resumes
after a lost connection, and puts a `client_msg_id` on every post so that a
retried post is stored once.
"""

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from typing import Any

import websockets

logger = logging.getLogger("agentchat_client")

# Ops that are safe to send again after a reconnect (msg_post is, by its client_msg_id).
RETRYABLE_OPS = {
    "msg_post",
    "msg_wait",
    "msg_list",
    "msg_get",
    "thread_get",
    "thread_list",
    "agent_list",
    "agent_heartbeat",
    "bus_get_config",
    "agent_set_typing",
    "agent_update",
}


class AgentChatError(Exception):
    """An error reply: `code` is the protocol's error code, `data` the whole error object."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.data = error


class ConnectionLost(Exception):
    """The socket closed before the reply arrived."""


class AgentChatClient:
    def __init__(
        self,
        url: str,
        *,
        ide: str = "",
        model: str = "",
        agent_id: str | None = None,
        token: str | None = None,
        reconnect_attempts: int = 30,
        heartbeats: bool = True,
    ) -> None:
        self.url = url
        self.ide, self.model = ide, model
        self.agent_id, self.token = agent_id, token
        self.reconnect_attempts = reconnect_attempts
        self.heartbeats = heartbeats
        self.heartbeat_interval = 40.0
        # thread_id -> {"cursor": seq read up to, "current_seq": ..., "reply_token": ...}
        self.threads: dict[str, dict[str, Any]] = {}
        self._ws = None
        self._ids = itertools.count(1)
        # request id -> (the socket it was sent on, the future of its reply)
        self._pending: dict[str, tuple[Any, asyncio.Future]] = {}
        self._reader: asyncio.Task | None = None
        self._heartbeat: asyncio.Task | None = None
        self._reconnecting: asyncio.Lock | None = None
        self._waits = 0
        self._last_sent = 0.0

    # --- connection -------------------------------------------------------------

    async def __aenter__(self) -> "AgentChatClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the socket and bind it: resume with stored credentials, else register."""
        self._reconnecting = self._reconnecting or asyncio.Lock()
        ws = await websockets.connect(self.url, open_timeout=10, max_size=None)
        self._reader = asyncio.create_task(self._read(ws))
        # Other requests keep using the old socket (and wait for this reconnect)
        # until this one is bound, so none of them is sent unauthenticated.
        try:
            if self.agent_id and self.token:
                await self._request("agent_resume", {"agent_id": self.agent_id, "token": self.token}, ws=ws)
            else:
                result = await self._request("agent_register", {"ide": self.ide, "model": self.model}, ws=ws)
                self.agent_id, self.token = result["agent_id"], result["token"]
            config = await self._request("bus_get_config", {}, ws=ws)
        except BaseException:
            await ws.close()
            raise
        self.heartbeat_interval = float(config["heartbeat_interval"])
        self._ws = ws
        if self.heartbeats and self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def close(self) -> None:
        for task in (self._heartbeat, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._heartbeat = self._reader = None
        if self._ws is not None:
            await self._ws.close()

    async def _read(self, ws) -> None:
        try:
            async for frame in ws:
                reply = json.loads(frame)
                _sent_on, future = self._pending.pop(str(reply.get("id")), (None, None))
                if future is not None and not future.done():
                    future.set_result(reply)
        except websockets.ConnectionClosed:
            pass
        finally:
            for request_id, (sent_on, future) in list(self._pending.items()):
                if sent_on is ws:
                    del self._pending[request_id]
                    if not future.done():
                        future.set_exception(ConnectionLost())

    async def _reconnect(self, broken) -> None:
        async with self._reconnecting:
            if self._ws is not broken:  # someone else reconnected already
                return
            delay = 0.1
            for attempt in range(self.reconnect_attempts):
                try:
                    await self.connect()
                    return
                except (OSError, websockets.WebSocketException, ConnectionLost) as error:
                    logger.info("Reconnect %d failed: %s", attempt + 1, error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
            raise ConnectionLost(f"Could not reconnect to {self.url}")

    # --- requests ---------------------------------------------------------------

    async def _request(self, op: str, args: dict[str, Any], ws=None) -> dict[str, Any]:
        request_id = str(next(self._ids))
        ws = ws or self._ws
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (ws, future)
        try:
            await ws.send(json.dumps({"id": request_id, "op": op, "args": args}, ensure_ascii=False))
        except websockets.ConnectionClosed:
            self._pending.pop(request_id, None)
            raise ConnectionLost() from None
        self._last_sent = asyncio.get_running_loop().time()
        reply = await future
        if not reply["ok"]:
            raise AgentChatError(reply["error"])
        return reply["result"]

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one request and return its result; reconnect and retry where that is safe."""
        args = {key: value for key, value in args.items() if value is not None}
        for attempt in itertools.count():
            ws = self._ws
            try:
                return await self._request(op, args)
            except ConnectionLost:
                await self._reconnect(ws)
                if op not in RETRYABLE_OPS:
                    raise
            except AgentChatError as error:
                # A lost database connection is reported as a retryable Internal error.
                if not (error.data.get("retryable") and op in RETRYABLE_OPS and attempt < 5):
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(1.0, self.heartbeat_interval / 4))
            # Inside msg_wait the server keeps the heartbeat fresh; any request counts too.
            if self._waits == 0 and loop.time() - self._last_sent >= self.heartbeat_interval * 0.75:
                with contextlib.suppress(Exception):
                    await self.call("agent_heartbeat")

    # --- the agent's view of threads ----------------------------------------------

    def _remember(self, thread_id: str, result: dict[str, Any], cursor: int | None = None) -> None:
        state = self.threads.setdefault(thread_id, {"cursor": 0})
        state["current_seq"] = result["current_seq"]
        state["reply_token"] = result["reply_token"]
        state["cursor"] = max(state["cursor"], cursor if cursor is not None else result["current_seq"])

    async def join(self, thread_name: str | None = None, *, thread_id: str | None = None) -> str:
        """Join (or create, by name) a thread; return its id. Read unseen messages with wait()."""
        after = self.threads.get(thread_id or "", {}).get("cursor", 0)
        result = await self.call(
            "bus_connect",
            thread_name=thread_name,
            thread_id=thread_id,
            agent_id=self.agent_id,
            token=self.token,
            after_seq=after,
        )
        joined = result["thread"]["thread_id"]
        # Keep the cursor where it was: wait() returns what is unread, in order.
        self.threads.setdefault(joined, {"cursor": after})
        return joined

    async def wait(
        self, thread_id: str, *, timeout_ms: int | None = None, for_agent: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Return the messages after the cursor, waiting for one if there are none yet."""
        state = self.threads.setdefault(thread_id, {"cursor": 0})
        self._waits += 1
        try:
            result = await self.call(
                "msg_wait",
                thread_id=thread_id,
                after_seq=state["cursor"],
                timeout_ms=timeout_ms,
                for_agent=for_agent,
                limit=limit,
            )
        finally:
            self._waits -= 1
        messages = result["messages"]
        self._remember(thread_id, result, cursor=messages[-1]["seq"] if messages else result["current_seq"])
        return messages

    async def post(self, thread_id: str, content: str, **fields: Any) -> dict[str, Any]:
        """Post with the thread's latest sync context; AgentChatError SeqMismatch means wait() first."""
        state = self.threads.get(thread_id)
        if state is None or "reply_token" not in state:
            await self.wait(thread_id, timeout_ms=0)
            state = self.threads[thread_id]
        result = await self.call(
            "msg_post",
            thread_id=thread_id,
            content=content,
            expected_last_seq=state["current_seq"],
            reply_token=state["reply_token"],
            client_msg_id=fields.pop("client_msg_id", None) or uuid.uuid4().hex,
            **fields,
        )
        self._remember(thread_id, result)
        return result["message"]
