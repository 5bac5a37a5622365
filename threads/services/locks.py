"""Row locks that serialize changes to a thread (posts, state changes, announcements)."""

from django.core.exceptions import ValidationError

from agentchat.errors import NotFound
from threads.models import Thread


def lock_thread(thread_id: str) -> Thread:
    """The thread's row, locked until the transaction ends (NotFound for an unknown or malformed id)."""
    try:
        return Thread.objects.select_for_update().get(pk=thread_id)
    except (Thread.DoesNotExist, ValidationError, ValueError):
        raise NotFound("thread") from None
