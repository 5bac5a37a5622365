"""Sending events on the channel layer from synchronous code."""

import logging
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
