"""
The live console's WebSocket at /ws/console/ (staff only).

It is fed by the channel-layer events that wake agents (`thread.message` on
the thread's group, presence, typing and waiting on the presence group) plus
the console's own group for dashboard activity, so it works in every server
process. A message event carries only a seq: the socket reads the new
messages from the database, from the last seq it sent, and sends them
rendered. The page says where to start (`catch_up` with the last seq it
shows), so a reconnect fills the gap with no duplicates and no holes.

Anyone but an active staff user with a session, or a page from a foreign
origin, is refused at the handshake.
"""

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agents.events import PRESENCE_GROUP
from console import selectors
from threads.events import CONSOLE_GROUP, thread_group
from threads.models import Thread

logger = logging.getLogger("agentchat.console")

db = database_sync_to_async


def _has_origin(scope: dict[str, Any]) -> bool:
    """Browsers always send Origin; the outer validator (agentchat/origins.py) checks its host."""
    return any(name == b"origin" and value for name, value in scope.get("headers", []))


def _thread_id(scope: dict[str, Any]) -> str | None | bool:
    """The thread the page shows (None: the dashboard; False: not a valid id)."""
    values = parse_qs(scope.get("query_string", b"").decode()).get("thread")
    if not values:
        return None
    try:
        return str(UUID(values[0]))
    except ValueError:
        return False


def _may_view(user, thread_id: str | None) -> bool:
    if not (user.has_perm("threads.view_thread") or user.has_perm("threads.change_thread")):
        return False
    return thread_id is None or Thread.objects.filter(pk=thread_id).exists()


def _messages_after(thread_id: str, after_seq: int) -> list[dict[str, Any]]:
    return [selectors.entry_payload(e) for e in selectors.entries_after(thread_id=thread_id, after_seq=after_seq)]


def _presence(thread_id: str) -> list[dict[str, Any]]:
    thread = Thread.objects.get(pk=thread_id)
    return [
        {
            "agent_id": p.id,
            "name": p.name,
            "detail": p.detail,
            "is_online": p.online,
            "is_waiting": p.waiting,
            "last_seen": p.last_seen.isoformat(),
            "delivered_seq": p.delivered_seq,
            "seen_seq": p.seen_seq,
        }
        for p in selectors.participants(thread=thread)
    ]


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.joined: list[str] = []
        self.cursor: int | None = None
        self.lock = asyncio.Lock()
        user = self.scope.get("user")
        self.thread_id = _thread_id(self.scope)
        allowed = (
            _has_origin(self.scope)
            and user is not None
            and user.is_authenticated
            and user.is_active
            and user.is_staff
            and self.thread_id is not False
            and await db(_may_view)(user, self.thread_id)
        )
        if not allowed:
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        groups = [PRESENCE_GROUP, CONSOLE_GROUP]
        if self.thread_id:
            groups.append(thread_group(self.thread_id))
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in self.joined:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:
                logger.warning("Could not leave group %s", group, exc_info=True)

    # --- requests from the page ---------------------------------------------------

    async def receive_json(self, content: Any, **kwargs) -> None:
        if not isinstance(content, dict):
            return
        op = content.get("op")
        if op == "catch_up" and self.thread_id:
            after = content.get("after_seq")
            if isinstance(after, int) and not isinstance(after, bool) and after >= 0:
                async with self.lock:
                    self.cursor = after
                    await self._send_new()
        elif op == "presence" and self.thread_id:
            await self.send_json({"type": "presence", "agents": await db(_presence)(self.thread_id)})
        elif op == "counters":
            await self.send_json({"type": "counters", "counters": await db(selectors.dashboard_counters)()})
        elif op == "queues":
            await self.send_json({"type": "queues", "html": await db(selectors.queues_html)()})

    async def _send_new(self) -> None:
        """Send every message after the cursor (call with the lock held)."""
        while True:
            batch = await db(_messages_after)(self.thread_id, self.cursor)
            if not batch:
                return
            await self.send_json({"type": "messages", "messages": batch})
            self.cursor = batch[-1]["seq"]
            if len(batch) < selectors.CATCH_UP_LIMIT:
                return

    # --- channel-layer events --------------------------------------------------------

    async def thread_message(self, event: dict[str, Any]) -> None:
        if event.get("thread_id") != self.thread_id or self.cursor is None:
            return  # before the page's catch_up, that catch_up will read it
        if int(event.get("seq", 0)) <= self.cursor:
            return
        async with self.lock:
            await self._send_new()

    async def thread_state(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "state", "thread_id": event.get("thread_id"), "status": event.get("status")})

    async def console_activity(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "activity", "thread_id": event.get("thread_id"), "seq": event.get("seq")})

    async def agent_presence(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "agent", "agent_id": event.get("agent_id"), "is_online": event.get("is_online")})

    async def agent_typing(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "typing",
                "agent_id": event.get("agent_id"),
                "thread_id": event.get("thread_id"),
                "is_typing": event.get("is_typing"),
            }
        )

    async def agent_waiting(self, event: dict[str, Any]) -> None:
        # A server process publishes the waits that started or stopped in one event per batch.
        for change in event.get("changes") or []:
            await self.send_json(
                {
                    "type": "waiting",
                    "agent_id": change.get("agent_id"),
                    "thread_id": change.get("thread_id"),
                    "is_waiting": change.get("is_waiting"),
                }
            )
