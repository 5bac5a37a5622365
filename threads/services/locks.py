"""Row locks that serialize changes to a thread (posts, state changes, announcements)."""

from typing import Any

from django.core.exceptions import ValidationError

from agentchat.errors import NotFound
from threads.models import Thread


def lock_thread(thread_id: str, **annotations: Any) -> Thread:
    """The thread's row, locked until the transaction ends (NotFound for an unknown or malformed id).

    `annotations` (subqueries a caller needs under the same lock; None ones
    are left out) ride along in the same statement.
    """
    annotations = {name: value for name, value in annotations.items() if value is not None}
    try:
        # NO KEY UPDATE (PostgreSQL): it serializes the changes to the thread, yet
        # does not block the foreign-key checks of rows that refer to it (tokens,
        # messages inserted by others), which would deadlock against the agent's lock.
        return Thread.objects.select_for_update(no_key=True).annotate(**annotations).get(pk=thread_id)
    except (Thread.DoesNotExist, ValidationError, ValueError):
        raise NotFound("thread") from None
