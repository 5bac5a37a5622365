"""Sending events on the channel layer from synchronous code."""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger("agentchat.broadcast")


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send `message` to every channel in `group`; never raise.

    Callers run this after a commit (transaction.on_commit): what was stored
    stays stored, and a lost wake-up is caught by the waiters' periodic
    re-check (threads/waiting_room.py). `message` must hold only JSON types, since
    channels-redis sends it as msgpack.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
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
