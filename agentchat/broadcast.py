"""Sending events on the channel layer from synchronous code."""

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger("agentchat.broadcast")


def group_send(group: str, message: dict[str, Any], *, at_most_every: float = 0) -> None:
    """Send `message` to every channel in `group`; never raise.

    Callers run this after a commit (transaction.on_commit): what was stored
    stays stored, and a lost wake-up is caught by the waiters' periodic
    re-check (threads/waiting_room.py). `message` must hold only JSON types, since
    channels-redis sends it as msgpack.

    On the database thread of a server process (code run by
    `database_sync_to_async`), the send is handed to the process's event loop
    and this returns at once: the request that committed does not wait for the
    channel layer. Sends handed over this way start in the order they were
    handed. Elsewhere (management commands, tests) it sends and returns after.

    `at_most_every` (seconds; handed-over sends only) thins a group's sends
    out for listeners that only need to know that something happened: the
    first goes at once, and of those that follow within the period only the
    last goes, at its end.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _serving_event_loop()
    if loop is not None:
        if at_most_every:
            loop.call_soon_threadsafe(_offer_throttled, layer, group, at_most_every, message)
        else:
            loop.call_soon_threadsafe(_start_send, layer, group, message)
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.warning("Could not send %s to group %s", message.get("type"), group, exc_info=True)


def _serving_event_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop this thread works for, when it is a `sync_to_async` worker thread; else None."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or not loop.is_running():
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return loop  # a worker thread: no loop of its own
    return None


_sends: set[asyncio.Task] = set()


def _start_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    task = asyncio.get_running_loop().create_task(_send(layer, group, message))
    _sends.add(task)  # the loop holds tasks only weakly
    task.add_done_callback(_sends.discard)


class _Throttle:
    """At most one send to a group per period, on the event loop: the first at once, then the latest."""

    def __init__(self, group: str, period: float) -> None:
        self.group, self.period = group, period
        self.last_sent = float("-inf")
        self.pending: tuple[Any, dict[str, Any]] | None = None

    def offer(self, layer: Any, message: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        wait = self.last_sent + self.period - loop.time()
        if wait <= 0 and self.pending is None:
            self.last_sent = loop.time()
            _start_send(layer, self.group, message)
            return
        if self.pending is None:
            loop.call_later(max(wait, 0), self._flush)
        self.pending = (layer, message)

    def _flush(self) -> None:
        if self.pending is not None:
            (layer, message), self.pending = self.pending, None
            self.last_sent = asyncio.get_running_loop().time()
            _start_send(layer, self.group, message)


# Per event loop: a loop that closes takes its throttles, and any send still pending, with it.
_throttles: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Throttle]]" = weakref.WeakKeyDictionary()


def _offer_throttled(layer: Any, group: str, period: float, message: dict[str, Any]) -> None:
    """On the event loop: offer `message` to the group's throttle."""
    throttles = _throttles.setdefault(asyncio.get_running_loop(), {})
    throttle = throttles.get(group)
    if throttle is None or throttle.period != period:
        throttle = throttles[group] = _Throttle(group, period)
    throttle.offer(layer, message)


async def _send(layer: Any, group: str, message: dict[str, Any]) -> None:
    try:
        await layer.group_send(group, message)
    except Exception:
        logger.warning("Could not send %s to group %s", message.get("type"), group, exc_info=True)


async def receive_forever(layer: Any, channel: str, handle: Callable[[dict[str, Any]], None], *, what: str) -> None:
    """Hand every event the channel receives to `handle`, until cancelled.

    A failing receive (Redis restarting) is retried with a backoff of 0.1 s
    doubling to 5 s; what it lost is the at-most-once channel layer's to lose,
    and each listener has its own safety net (the waiting room's re-check, the
    revocations' generation check).
    """
    backoff = 0.1
    while True:
        try:
            event = await layer.receive(channel)
            backoff = 0.1
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("%s: channel layer receive failed; retrying in %.1fs", what, backoff, exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        handle(event)
