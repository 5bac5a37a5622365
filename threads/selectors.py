"""Reads: threads and messages as the ops and the admin need them."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F, Min, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from agentchat.errors import BadRequest, NotFound, PayloadTooLarge
from agentchat.transport import EncodedList, reply_budget, take_within
from agents import events as agent_events
from threads.models import (
    HumanRequest,
    Message,
    MessageEdit,
    Participant,
    Reaction,
    Thread,
    ThreadTemplate,
    addressees,
)
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


# --- participants, receipts, overdue replies ------------------------------------

# Messages scanned at most when looking for overdue replies (per call).
_OVERDUE_SCAN = 5000


def _uuids(values: list[str]) -> list[str]:
    valid = []
    for value in values:
        try:
            valid.append(str(UUID(str(value))))
        except ValueError:
            pass
    return valid


@dataclass
class ParticipantView:
    """thread_participants: one agent's cursors in a thread, with presence."""

    row: Participant
    is_administrator: bool
    waiting: bool


def thread_participants(*, thread_id: str, limit: int) -> tuple[list[ParticipantView], bool]:
    """Agents that joined, posted, read or waited in the thread, first comers first. Two queries, one cache read."""
    thread = get_thread(thread_id=thread_id)
    rows = list(thread.participants.select_related("agent").order_by("joined_at", "pk")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    waiting = agent_events.waiting_threads(row.agent_id for row in rows)
    return [
        ParticipantView(
            row=row,
            is_administrator=row.agent_id == thread.administrator_id,
            waiting=str(thread.pk) in waiting.get(str(row.agent_id), ()),
        )
        for row in rows
    ], has_more


@dataclass
class Receipt:
    agent_id: str
    delivered_at: datetime | None
    seen_at: datetime | None
    answered_at: datetime | None
    answer_msg_id: str | None


def delivered_at(participant: Participant | None, seq: int) -> datetime | None:
    """When message `seq` was delivered to the participant, as far as its cursor tells (None: not, or unknown).

    Exact for the newest message delivered and for the latest run of messages
    addressed to it (`owed_since`: the first of them); for another older
    message the cursor's time is when the cursor last moved, at or after its
    delivery (docs/decisions.md, "Receipts").
    """
    if participant is None or participant.delivered_seq < seq:
        return None
    if participant.owed_seq == seq:
        return participant.owed_since
    return participant.delivered_at


def message_receipts(*, msg_id: str, limit: int) -> tuple[Message, list[Receipt], bool]:
    """msg_receipts: a receipt per addressee of the message, or per other participant when it has none.

    Three queries: the message, the participants, the first posts after it.
    """
    message = get_message(msg_id=msg_id)
    author = str(message.author_id) if message.author_id else None
    targets = [t for t in dict.fromkeys(addressees(message.metadata)) if t != author]
    participants = Participant.objects.filter(thread_id=message.thread_id)
    if targets:
        has_more = len(targets) > limit
        targets = targets[:limit]
        rows = {str(p.agent_id): p for p in participants.filter(agent_id__in=_uuids(targets))}
    else:
        others = list(participants.exclude(agent_id=message.author_id).order_by("joined_at", "pk")[: limit + 1])
        has_more = len(others) > limit
        rows = {str(p.agent_id): p for p in others[:limit]}
        targets = list(rows)
    # The first post of each agent after the message (only those that posted after it).
    posted_after = [a for a, p in rows.items() if (p.last_post_seq or 0) > message.seq]
    answers: dict[str, tuple[str, datetime]] = {}
    if posted_after:
        firsts = (
            Message.objects.filter(thread_id=message.thread_id, author_id__in=posted_after, seq__gt=message.seq)
            .order_by()
            .values("author_id")
            .annotate(first=Min("seq"))
            .values_list("first", flat=True)
        )
        for pk, author_id, created_at in Message.objects.filter(
            thread_id=message.thread_id, seq__in=list(firsts)
        ).values_list("pk", "author_id", "created_at"):
            answers[str(author_id)] = (str(pk), created_at)
    receipts = []
    for target in targets:
        p = rows.get(target)
        answer_id, answered = answers.get(target, (None, None))
        receipts.append(
            Receipt(
                agent_id=target,
                delivered_at=delivered_at(p, message.seq),
                seen_at=p.seen_at if p is not None and p.seen_seq >= message.seq else None,
                answered_at=answered,
                answer_msg_id=answer_id,
            )
        )
    return message, receipts, has_more


@dataclass
class Overdue:
    """A reply an agent owes: `message` was addressed to `agent`, delivered `since`, and not answered."""

    participant: Participant
    message: Message
    since: datetime

    @property
    def thread(self) -> Thread:
        return self.participant.thread

    @property
    def agent(self):
        return self.participant.agent


def overdue_replies(
    *, thread_id: str | UUID | None = None, now: datetime | None = None, limit: int = 100, seconds: int | None = None
) -> list[Overdue]:
    """Messages addressed to an agent, delivered to it over REPLY_EXPECTED_SECONDS ago and not answered.

    Oldest first, at most `limit`. Only open threads and registered agents
    count (a closed thread cannot be answered). Two queries. `seconds`
    overrides REPLY_EXPECTED_SECONDS.
    """
    seconds = settings.AGENTCHAT["REPLY_EXPECTED_SECONDS"] if seconds is None else seconds
    if not seconds:
        return []
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=seconds)
    owing = Participant.objects.filter(
        Q(last_post_seq__isnull=True) | Q(last_post_seq__lt=F("owed_seq")),
        owed_seq__isnull=False,
        owed_since__lte=cutoff,
        thread__status__in=Thread.OPEN_STATES,
        agent__unregistered_at__isnull=True,
    ).select_related("agent", "thread")
    if thread_id is not None:
        owing = owing.filter(thread_id=thread_id)
    owing = list(owing.order_by("owed_since", "pk")[:limit])
    if not owing:
        return []
    ranges = Q()
    for p in owing:
        ranges |= Q(thread_id=p.thread_id, seq__gte=p.owed_seq, seq__lte=p.delivered_seq)
    by_thread: dict[UUID, list[Message]] = {}
    scanned = (
        Message.objects.filter(ranges)
        .only("id", "thread_id", "seq", "author_id", "author_name", "metadata", "created_at", "content")
        .order_by("created_at", "seq")[:_OVERDUE_SCAN]
    )
    for message in scanned:
        by_thread.setdefault(message.thread_id, []).append(message)
    found = []
    for p in owing:
        me = str(p.agent_id)
        for message in by_thread.get(p.thread_id, ()):
            if not (p.owed_seq <= message.seq <= p.delivered_seq) or message.seq <= (p.last_post_seq or 0):
                continue
            if str(message.author_id) == me or me not in addressees(message.metadata):
                continue
            since = p.owed_since if message.seq == p.owed_seq else max(message.created_at, p.owed_since)
            if since <= cutoff:
                found.append(Overdue(participant=p, message=message, since=since))
    found.sort(key=lambda o: (o.since, o.message.seq))
    return found[:limit]


def thread_with_overdue_count(*, thread_id: str) -> tuple[Thread, int]:
    """thread_get: the thread and how many replies are overdue in it (counted up to 1,000)."""
    thread = get_thread(thread_id=thread_id)
    return thread, len(overdue_replies(thread_id=thread.pk, limit=1000))


def open_human_requests(*, thread_id: str | UUID | None = None, limit: int = 50) -> tuple[list[HumanRequest], int]:
    """Requests for a human not answered or dismissed yet, oldest first, and how many there are. Two queries."""
    queryset = HumanRequest.objects.filter(resolved_at__isnull=True)
    if thread_id is not None:
        queryset = queryset.filter(thread_id=thread_id)
    requests = list(queryset.select_related("message", "thread").order_by("created_at", "pk")[:limit])
    total = len(requests) if len(requests) < limit else queryset.count()
    return requests, total
