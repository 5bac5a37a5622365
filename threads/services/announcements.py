"""Announcements by the bus itself: messages (role and priority `system`, no author) that agents read like any other.

A thread's status changes (closed, archived, reopened, moved to another
state) and administrator handovers are announced in the thread, so that
every agent learns of them the way it learns of anything: its msg_wait
returns the announcement. A live console hears the change on the channel
layer as well (`thread.state`).
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from threads import events
from threads.models import Message, Thread

# The author name of the messages the bus itself posts.
BUS_AUTHOR = "AgentChat"


def announce(thread: Thread, *, content: str, metadata: dict[str, Any], now: datetime | None = None) -> Message:
    """Post the bus's announcement into a thread whose row the caller holds locked (even a closed one)."""
    from threads.services.posting import append_message

    return append_message(
        thread=thread,
        now=now or timezone.now(),
        author=None,
        author_name=BUS_AUTHOR,
        role=Message.Role.SYSTEM,
        priority=Message.Priority.SYSTEM,
        content=content,
        metadata=metadata,
        from_bus=True,
    )


def actor_name(*, agent: Agent | None = None, staff_user: Any = None) -> str:
    if agent is not None:
        return agent.name
    if staff_user is not None and hasattr(staff_user, "get_username"):
        return f"staff user {staff_user.get_username()}"
    return "staff"


def announce_status(
    thread: Thread,
    *,
    previous: str,
    agent: Agent | None = None,
    staff_user: Any = None,
    idle_minutes: int | None = None,
) -> Message:
    """Announce a status change of a locked thread (`metadata.event` = `status_changed`), then tell live views."""
    if idle_minutes is not None:
        by = f"closed after {idle_minutes} idle minute(s)"
    else:
        by = f"by {actor_name(agent=agent, staff_user=staff_user)}"
    content = f"The thread is now {thread.status} (was {previous}), {by}."
    if thread.status == Thread.Status.CLOSED and thread.summary:
        content += f" Summary: {thread.summary}"
    message = announce(
        thread,
        content=content,
        metadata={"event": "status_changed", "status": thread.status, "previous_status": previous},
    )
    thread_id, status = thread.pk, thread.status
    transaction.on_commit(lambda: events.broadcast_state(thread_id=thread_id, status=status))
    return message
