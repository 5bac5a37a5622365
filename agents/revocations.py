"""
This process's record of revoked credentials (agents/services/credentials.py explains the design).

`note` records that an agent's sessions bound before a generation are
revoked; `is_revoked` is the dict lookup `agentchat.ops.dispatch` makes
before every op of a bound session. A listener per event loop, running
while the loop has bound sessions, hears the revocations committed by other
processes on the channel-layer group `agentchat.revocations`.
"""

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from agentchat.broadcast import receive_forever
from agents.events import REVOCATIONS_GROUP

logger = logging.getLogger("agentchat.revocations")

# Agent id -> the newest generation revoked up to (a session bound under an
# older generation is revoked). Small: one entry per agent revoked while this
# process runs.
_revoked: dict[str, int] = {}
# Agent id -> (loop, callback, generation bound) of the pending waits to end when it is revoked.
_watchers: dict[str, set[tuple[asyncio.AbstractEventLoop, Callable[[], None], int]]] = {}
_lock = threading.Lock()


def note(*, agent_id: str, generation: int) -> None:
    """Record a revocation (from any thread) and wake the waits of the sessions it revokes."""
    with _lock:
        if generation <= _revoked.get(agent_id, -1):
            return
        _revoked[agent_id] = generation
        woken = [(loop, callback) for loop, callback, bound in _watchers.get(agent_id, ()) if bound < generation]
    for loop, callback in woken:
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # its loop has closed
            pass


def is_revoked(agent: Any) -> bool:
    """Whether this process has heard that `agent`'s credentials (as bound) were revoked."""
    revoked = _revoked.get(str(agent.pk))
    return revoked is not None and revoked >= agent.credential_generation + 1


def watch(agent: Any, on_revoked: Callable[[], None]) -> Callable[[], None]:
    """Call `on_revoked` (on this event loop) when the agent's credentials, as bound, are revoked.

    Costs a set entry, not a task: a pending msg_wait passes a callback that
    cancels it. Call `unwatch` with it when done.
    """
    key = str(agent.pk)
    with _lock:
        _watchers.setdefault(key, set()).add((asyncio.get_running_loop(), on_revoked, agent.credential_generation))
    if is_revoked(agent):
        asyncio.get_running_loop().call_soon(on_revoked)
    return on_revoked


def unwatch(agent: Any, on_revoked: Callable[[], None]) -> None:
    key = str(agent.pk)
    with _lock:
        members = _watchers.get(key, set())
        for entry in [entry for entry in members if entry[1] is on_revoked]:
            members.discard(entry)
        if not members:
            _watchers.pop(key, None)


class Listener:
    """Hears other processes' revocations while this event loop has bound sessions."""

    def __init__(self) -> None:
        self.sessions: weakref.WeakSet = weakref.WeakSet()
        self.task: asyncio.Task | None = None

    def add(self, session: Any) -> None:
        self.sessions.add(session)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._listen(), name="agentchat-revocations")

    async def discard(self, session: Any) -> None:
        self.sessions.discard(session)
        if not self.sessions and self.task is not None:
            task, self.task = self.task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await layer.new_channel()
        renewer = asyncio.create_task(self._renew(layer, channel), name="agentchat-revocations-renew")
        try:
            await receive_forever(layer, channel, self._heard, what="Revocation listener")
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            try:
                await layer.group_discard(REVOCATIONS_GROUP, channel)
            except Exception:
                logger.warning("Could not leave %s", REVOCATIONS_GROUP, exc_info=True)

    @staticmethod
    def _heard(event: dict[str, Any]) -> None:
        # Lost broadcasts are caught by the heartbeat write's generation check.
        if event.get("type") == "agent.revoked":
            note(agent_id=str(event.get("agent_id")), generation=int(event.get("generation", 0)))

    @staticmethod
    async def _renew(layer: Any, channel: str) -> None:
        """Join the group, and join again every heartbeat interval (Redis may have restarted or expired it)."""
        while True:
            try:
                await layer.group_add(REVOCATIONS_GROUP, channel)
            except Exception:
                logger.warning("Could not join %s", REVOCATIONS_GROUP, exc_info=True)
            await asyncio.sleep(max(1, settings.AGENTCHAT["HEARTBEAT_INTERVAL"]))


_listeners: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Listener]" = weakref.WeakKeyDictionary()


def listener() -> Listener:
    """The revocation listener of the running event loop (one per server process in production)."""
    loop = asyncio.get_running_loop()
    found = _listeners.get(loop)
    if found is None:
        found = _listeners[loop] = Listener()
    return found
