"""Handing a thread's administrator role to another participant, announced in the thread."""

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agentchat.errors import BadRequest, NotFound
from agents.models import Agent
from threads.models import Message, Participant, Thread
from threads.services.announcements import actor_name, announce
from threads.services.lifecycle import check_administrator
from threads.services.locks import lock_thread


def is_participant(thread: Thread, agent: Agent) -> bool:
    """Whether the agent takes part in the thread: it posted there, or joined, created, read or waited on it."""
    return (
        Participant.objects.filter(thread=thread, agent=agent).exists()
        or Message.objects.filter(thread=thread, author=agent).exists()
    )


@transaction.atomic
def set_administrator(
    *,
    thread_id: str,
    agent_id: str,
    agent: Agent | None = None,
    staff_user: Any = None,
    now: datetime | None = None,
) -> tuple[Thread, Message | None]:
    """Make the agent `agent_id` the thread's administrator (by its administrator or a staff user).

    The new administrator must be a registered agent taking part in the
    thread. The change is announced in the thread by a message from the bus
    (role and priority `system`, no author, `metadata.event` =
    `administrator_changed`), which wakes the thread's waiters like any post;
    it is posted even into a closed thread, so that its new administrator
    learns of it. Handing the role to the agent that holds it changes nothing
    and announces nothing. Returns the thread and the announcement.
    """
    thread = lock_thread(thread_id)
    check_administrator(thread, agent=agent, staff_user=staff_user)
    try:
        successor = Agent.objects.get(pk=agent_id, unregistered_at__isnull=True)
    except (Agent.DoesNotExist, ValidationError, ValueError):
        raise NotFound("agent") from None
    if thread.administrator_id == successor.pk:
        return thread, None
    if not is_participant(thread, successor):
        raise BadRequest(
            "The new administrator must take part in the thread (have joined or posted there).",
            field="administrator_agent_id",
        )
    previous_id = thread.administrator_id
    by = actor_name(agent=agent, staff_user=staff_user)
    thread.administrator = successor
    thread.save(update_fields=["administrator"])
    announcement = announce(
        thread,
        now=now or timezone.now(),
        content=f"{successor.name} is now the administrator of this thread (handed over by {by}).",
        metadata={
            "event": "administrator_changed",
            "administrator_agent_id": str(successor.pk),
            "previous_administrator_agent_id": str(previous_id) if previous_id else None,
        },
    )
    return thread, announcement
