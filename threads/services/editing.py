"""Editing messages: the author (or a staff user, from the admin) replaces a message's content.

The content before each edit is kept as an append-only MessageEdit row; the
message's seq never changes. Edits pass the same size limits and content
filter as posts, are indexed for search like posts, and are announced on the
thread's group after commit (`thread.edit`), which wakes no msg_wait.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agentchat.errors import Forbidden, NotFound, ThreadClosed
from agents.models import Agent
from threads import events, search
from threads.models import Message, MessageEdit
from threads.services.posting import check_content, clean_content


@dataclass
class Edited:
    message: Message
    # False when the new content equals the old: nothing was stored.
    changed: bool


def lock_message(msg_id: str) -> Message:
    """The message's row, locked until the transaction ends (NotFound for an unknown or malformed id)."""
    try:
        return Message.objects.select_for_update(of=("self",)).select_related("thread").get(pk=msg_id)
    except (Message.DoesNotExist, ValidationError, ValueError):
        raise NotFound("message") from None


@transaction.atomic
def edit_message(
    *,
    msg_id: str,
    content: str,
    agent: Agent | None = None,
    staff_user: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> Edited:
    """Replace a message's content as `agent` (its author) or `staff_user` (any message).

    Checks in order: the content's size, the message, the editor's right to
    edit it, the thread's state (agents cannot edit in a closed or archived
    thread; staff can, to redact), the content filter. Content equal to the
    current content stores nothing and announces nothing.
    """
    if (agent is None) == (staff_user is None):
        raise ValueError("An edit has exactly one editor: an agent or a staff user.")
    content = clean_content(content)
    message = lock_message(msg_id)
    if agent is not None:
        if message.author_id != agent.pk:
            raise Forbidden("Only the author of a message may edit it.")
        if not message.thread.is_open:
            raise ThreadClosed(f"The thread is {message.thread.status}.")
    elif not staff_user.is_staff:
        raise Forbidden("Only staff users may edit other people's messages.")
    check_content(content)
    if content == message.content:
        return Edited(message=message, changed=False)

    now = now or timezone.now()
    version = message.edit_version + 1
    MessageEdit.objects.create(
        message=message,
        version=version,
        old_content=message.content,
        editor_agent=agent,
        editor_user=staff_user,
        editor_name=agent.name if agent is not None else staff_user.get_username(),
        created_at=now,
    )
    message.content = content
    message.edit_version = version
    message.edited_at = now
    message.save(update_fields=["content", "edit_version", "edited_at"])
    search.index_message(message, created=False)
    thread_id, seq = message.thread_id, message.seq
    transaction.on_commit(
        lambda: events.broadcast_edit(thread_id=thread_id, msg_id=message.pk, seq=seq, edit_version=version)
    )
    return Edited(message=message, changed=True)
