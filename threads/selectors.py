"""Reads: threads and messages as the ops and the admin need them."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils.dateparse import parse_datetime

from agentchat.errors import BadRequest, NotFound, PayloadTooLarge
from agentchat.transport import EncodedList, reply_budget, take_within
from threads.models import Message, MessageEdit, Reaction, Thread, ThreadTemplate, addressees
from threads.serializers import messages_to_list

# Messages scanned per query when msg_wait filters by for_agent.
_SCAN_BATCH = 500


def get_thread(*, thread_id: str | UUID) -> Thread:
    try:
        return Thread.objects.get(pk=thread_id)
    except (Thread.DoesNotExist, ValidationError, ValueError):
        raise NotFound("thread") from None


def get_message(*, msg_id: str | UUID) -> Message:
    try:
        return Message.objects.get(pk=msg_id)
    except (Message.DoesNotExist, ValidationError, ValueError):
        raise NotFound("message") from None


def message_with_reactions(*, msg_id: str | UUID) -> tuple[Message, list[Reaction]]:
    """msg_get: a message and its reactions, oldest first."""
    message = get_message(msg_id=msg_id)
    return message, list(message.reactions.select_related("agent").order_by("created_at", "pk"))


def edit_history(*, msg_id: str | UUID) -> tuple[Message, list[MessageEdit]]:
    """msg_edit_history: a message and its edits, oldest first."""
    message = get_message(msg_id=msg_id)
    return message, list(message.edits.select_related("editor_agent").order_by("version"))


def list_templates() -> list[ThreadTemplate]:
    return list(ThreadTemplate.objects.order_by("name", "pk"))


def get_template(*, template_id: str) -> ThreadTemplate:
    template = ThreadTemplate.objects.filter(pk=template_id).first()
    if template is None:
        raise NotFound("template")
    return template


def list_messages(*, thread: Thread, after_seq: int = 0, limit: int = 100) -> list[Message]:
    return list(thread.messages.filter(seq__gt=after_seq).order_by("seq")[:limit])


def read_messages(*, thread_id: str, after_seq: int = 0, limit: int = 100) -> tuple[list[Message], bool, int]:
    """msg_list: messages with seq > after_seq in seq order, whether more follow, and the thread's current seq."""
    thread = get_thread(thread_id=thread_id)
    messages = list_messages(thread=thread, after_seq=after_seq, limit=limit + 1)
    return messages[:limit], len(messages) > limit, thread.last_seq


def count_within_reply(messages: list[Message]) -> int:
    """How many of `messages`, from the first, fit in one reply; PayloadTooLarge when not even the first does."""
    return len(fitting_payload(messages))


def fitting_payload(messages: list[Message]) -> EncodedList:
    """The longest run of `messages`, from the first, that fits in one reply, as the agents' JSON (encoded once).

    PayloadTooLarge when not even the first fits: only a message stored
    before MAX_REPLY_BYTES was lowered can be that large, since posts are
    refused when their message would not fit a reply.
    """
    fitting = take_within(messages_to_list(messages), reply_budget(), at_least_one=False)
    if messages and not fitting:
        raise PayloadTooLarge(
            f"Message {messages[0].seq} is larger than a reply may be; raise MAX_REPLY_BYTES to read it.",
            seq=messages[0].seq,
        )
    return EncodedList(fitting)


def newest_messages(*, thread: Thread, after_seq: int, limit: int) -> tuple[list[Message], bool]:
    """The newest `limit` messages with seq > after_seq, in seq order, and whether older ones were left out."""
    newest = list(thread.messages.filter(seq__gt=after_seq).order_by("-seq")[: limit + 1])
    truncated = len(newest) > limit
    return list(reversed(newest[:limit])), truncated


@dataclass
class WaitRead:
    """What one catch-up read of msg_wait found."""

    messages: list[Message]
    has_more: bool
    # The newest seq the agent may be said to have read: every message up to
    # it was committed before the read (seqs commit in order, under the
    # thread's row lock), and all that matched are in `messages`.
    read_seq: int
    # `messages` as agents see them, encoded once for every waiter this read serves.
    payload: EncodedList


def read_for_wait(*, thread_id: str, after_seq: int, limit: int, for_agent: str | None = None) -> WaitRead:
    """Read the messages msg_wait would return now (possibly none)."""
    # last_seq first: every message up to it is then visible to the next query.
    try:
        last_seq = Thread.objects.filter(pk=thread_id).values_list("last_seq", flat=True).first()
    except (ValidationError, ValueError):  # not a thread id at all: no such thread either
        last_seq = None
    if last_seq is None:
        raise NotFound("thread")
    queryset = Message.objects.filter(thread_id=thread_id).order_by("seq")
    if for_agent is None:
        found = list(queryset.filter(seq__gt=after_seq)[: limit + 1])
        newest_scanned = found[-1].seq if found else 0
    else:
        found, newest_scanned = [], 0
        while len(found) <= limit:
            batch = list(queryset.filter(seq__gt=max(after_seq, newest_scanned))[:_SCAN_BATCH])
            if not batch:
                break
            for message in batch:
                newest_scanned = message.seq
                if for_agent in addressees(message.metadata):
                    found.append(message)
                    if len(found) > limit:
                        break
    has_more = len(found) > limit
    found = found[:limit]
    # Bounded by bytes too, here and not when the reply is written: the token
    # this read ends with says how far the agent has read.
    payload = fitting_payload(found)
    if len(payload) < len(found):
        found, has_more = found[: len(payload)], True
    read_seq = found[-1].seq if has_more else max(last_seq, newest_scanned)
    return WaitRead(messages=found, has_more=has_more, read_seq=read_seq, payload=payload)


def last_seqs(*, thread_ids: list[str]) -> dict[str, int]:
    """The last seq of each thread, in one query (the waiters' safety net)."""
    rows = Thread.objects.filter(pk__in=thread_ids).values_list("pk", "last_seq")
    return {str(pk): seq for pk, seq in rows}


# --- thread_list cursor ------------------------------------------------------


def encode_cursor(thread: Thread) -> str:
    raw = json.dumps([thread.updated_at.isoformat(), str(thread.pk)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        updated_at, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = parse_datetime(updated_at)
        UUID(pk)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        moment = None
    if moment is None:
        raise BadRequest("before is not a cursor returned by thread_list.", field="before")
    return moment, pk


def list_threads(*, status: str | None = None, limit: int = 50, before: str | None = None) -> tuple[list[Thread], bool]:
    """Threads by last activity, newest first; archived ones only when asked for."""
    queryset = Thread.objects.all()
    if status is None:
        queryset = queryset.exclude(status=Thread.Status.ARCHIVED)
    else:
        queryset = queryset.filter(status=status)
    if before is not None:
        updated_at, pk = decode_cursor(before)
        queryset = queryset.filter(Q(updated_at__lt=updated_at) | Q(updated_at=updated_at, pk__lt=pk))
    page = list(queryset.order_by("-updated_at", "-pk")[: limit + 1])
    return page[:limit], len(page) > limit
