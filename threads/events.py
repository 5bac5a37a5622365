"""Thread events on the channel layer: the wake-ups of msg_wait, and edits announced to observers."""

import re
from typing import Any
from uuid import UUID

from agentchat.broadcast import group_send
from agentchat.transport import size


def thread_group(thread_id: UUID | str) -> str:
    """The channel-layer group of a thread (letters, digits, '.', '-' only)."""
    name = f"thread.{thread_id}"
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,99}", name):
        raise ValueError(f"Not a valid thread id for a group name: {thread_id!r}")
    return name


# A wake-up carries its message (as agents see it) when it takes at most this
# many bytes: waiters that have read everything before it return it without
# reading the database (threads/waiting_room.py).
EVENT_MESSAGE_BYTES = 32 * 1024


def message_event(
    *, thread_id: UUID, seq: int, targets: list[str], message: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The wake-up sent after a message commits. JSON types only."""
    event = {"type": "thread.message", "thread_id": str(thread_id), "seq": seq, "targets": targets}
    if message is not None:
        event["message"] = message
    return event


def broadcast_message(*, thread_id: UUID, seq: int, targets: list[str], message: dict[str, Any] | None = None) -> None:
    """Wake the thread's waiters in every process, and tell the console; `message` rides along when small."""
    if message is not None and size(message) > EVENT_MESSAGE_BYTES:
        message = None
    group_send(thread_group(thread_id), message_event(thread_id=thread_id, seq=seq, targets=targets, message=message))
    group_send(CONSOLE_GROUP, activity_event(thread_id=thread_id, seq=seq), at_most_every=ACTIVITY_SECONDS)


# The live console (console/consumers.py) listens here for activity in any
# thread: one more small event per post, sent to a group that holds only the
# sockets of staff with a console open. Its dashboard only recounts on it, so
# a process sends it at most every ACTIVITY_SECONDS (the latest one wins).
CONSOLE_GROUP = "agentchat.console"
ACTIVITY_SECONDS = 0.1


def activity_event(*, thread_id: UUID | str, seq: int | None = None, status: str | None = None) -> dict[str, Any]:
    return {"type": "console.activity", "thread_id": str(thread_id), "seq": seq, "status": status}


def state_event(*, thread_id: UUID | str, status: str) -> dict[str, Any]:
    return {"type": "thread.state", "thread_id": str(thread_id), "status": status}


def broadcast_state(*, thread_id: UUID | str, status: str) -> None:
    """Tell everyone watching a thread that its status changed (after the change commits)."""
    group_send(thread_group(thread_id), state_event(thread_id=thread_id, status=status))
    group_send(CONSOLE_GROUP, activity_event(thread_id=thread_id, status=status))


def edit_event(*, thread_id: UUID, msg_id: UUID, seq: int, edit_version: int) -> dict[str, Any]:
    """The announcement sent after an edit commits. Waiters ignore it: an edit is not a new message."""
    return {
        "type": "thread.edit",
        "thread_id": str(thread_id),
        "msg_id": str(msg_id),
        "seq": seq,
        "edit_version": edit_version,
    }


def broadcast_edit(*, thread_id: UUID, msg_id: UUID, seq: int, edit_version: int) -> None:
    group_send(
        thread_group(thread_id), edit_event(thread_id=thread_id, msg_id=msg_id, seq=seq, edit_version=edit_version)
    )


def broadcast_activity(*, thread_id: UUID | str) -> None:
    """Tell the console something changed in a thread that is not a message (a request dismissed)."""
    group_send(CONSOLE_GROUP, activity_event(thread_id=thread_id))
