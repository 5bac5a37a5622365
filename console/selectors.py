"""Reads for the live console: transcript pages, the presence panel and the dashboard.

Every function runs a fixed number of queries, whatever the size of the
thread or the number of agents (tests/console/test_queries.py holds them to it).
Transcript pages are seq ranges: seq is gap-free, so "the 50 before seq N"
is an index range scan on (thread, seq), never an OFFSET.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db.models import Exists, F, Max, OuterRef, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import Truncator

from agents import events as agent_events
from agents.models import Agent
from console.names import agent_detail, agent_name
from console.rendering import render_content
from threads import selectors as thread_selectors
from threads.models import HumanRequest, Message, Thread
from threads.models import Participant as CursorRow

PAGE_SIZE = 50
CATCH_UP_LIMIT = 200
# The dashboard counts overdue replies up to this many, and lists the oldest QUEUE_SIZE of each queue.
OVERDUE_COUNT_LIMIT = 1000
QUEUE_SIZE = 50


@dataclass
class Entry:
    """One message as the console shows it."""

    seq: int
    author: str
    detail: str  # IDE and model of an agent, "staff" for a human
    role: str
    priority: str
    created_at: datetime
    html: str
    human_only: bool
    reply_to_seq: int | None
    edited_at: datetime | None
    edit_version: int
    mentions: int
    handoff: bool
    needs_human: bool = False

    def as_html(self) -> str:
        return render_to_string("console/message.html", {"m": self})


def _entries(queryset) -> list[Entry]:
    rows = queryset.select_related("author").annotate(reply_seq=F("reply_to__seq")).order_by("seq")
    entries = []
    for message in rows:
        author = message.author
        metadata = message.metadata or {}
        entries.append(
            Entry(
                seq=message.seq,
                author=agent_name(author) if author else message.author_name,
                detail=agent_detail(author) if author else ("staff" if message.role == "user" else message.role),
                role=message.role,
                priority=message.priority,
                created_at=message.created_at,
                html=render_content(message.content),
                human_only=message.is_human_only,
                reply_to_seq=message.reply_seq,
                edited_at=message.edited_at,
                edit_version=message.edit_version,
                mentions=len(metadata.get("mentions") or []),
                handoff=bool(metadata.get("handoff_target")),
                needs_human=metadata.get("needs_human") is True,
            )
        )
    return entries


def page_before(*, thread_id: UUID | str, before_seq: int, size: int = PAGE_SIZE) -> list[Entry]:
    """The `size` messages just before `before_seq` (seq order). One query."""
    low = max(0, before_seq - size)
    return _entries(Message.objects.filter(thread_id=thread_id, seq__gt=low, seq__lt=before_seq))


def entries_after(*, thread_id: UUID | str, after_seq: int, limit: int = CATCH_UP_LIMIT) -> list[Entry]:
    """Up to `limit` messages after `after_seq` (seq order). One query."""
    return _entries(Message.objects.filter(thread_id=thread_id, seq__gt=after_seq, seq__lte=after_seq + limit))


def entry_payload(entry: Entry) -> dict[str, Any]:
    """A message as the console socket sends it (JSON types only)."""
    return {"seq": entry.seq, "html": entry.as_html()}


@dataclass
class Participant:
    id: str
    name: str
    detail: str
    online: bool
    waiting: bool
    last_seen: datetime
    # The agent's cursors in the thread (0: nothing yet).
    delivered_seq: int = 0
    seen_seq: int = 0


def participants(*, thread: Thread, now: datetime | None = None) -> list[Participant]:
    """Agents that posted in, joined or read the thread, with presence and cursors. Two queries and one cache read."""
    posted = Message.objects.filter(thread_id=thread.pk, author=OuterRef("pk"))
    cursors = {row.agent_id: row for row in CursorRow.objects.filter(thread_id=thread.pk)}
    agents = list(
        Agent.objects.filter(Q(Exists(posted)) | Q(pk=thread.creator_id) | Q(pk__in=list(cursors))).order_by("name")
    )
    waiting = agent_events.waiting_threads(a.pk for a in agents)
    return [
        Participant(
            id=str(a.pk),
            name=agent_name(a),
            detail=agent_detail(a),
            online=a.is_online_at(now),
            waiting=str(thread.pk) in waiting.get(str(a.pk), ()),
            last_seen=a.last_heartbeat,
            delivered_seq=cursors[a.pk].delivered_seq if a.pk in cursors else 0,
            seen_seq=cursors[a.pk].seen_seq if a.pk in cursors else 0,
        )
        for a in agents
    ]


def waiting_by_thread(*, now: datetime | None = None) -> dict[str, set[str]]:
    """Thread id -> ids of the agents waiting on it now. One query (online agents) and one cache read."""
    online = Agent.objects.online(now=now).values_list("pk", flat=True)
    result: dict[str, set[str]] = {}
    for agent_id, threads in agent_events.waiting_threads(online).items():
        for thread_id in threads:
            result.setdefault(thread_id, set()).add(agent_id)
    return result


def dashboard_counters(*, now: datetime | None = None) -> dict[str, int]:
    """The dashboard's numbers (nine queries and one cache read)."""
    now = now or timezone.now()
    waiting = waiting_by_thread(now=now)
    return {
        "needs_human": HumanRequest.objects.filter(resolved_at__isnull=True).count(),
        "overdue_replies": len(thread_selectors.overdue_replies(now=now, limit=OVERDUE_COUNT_LIMIT)),
        "online": Agent.objects.online(now=now).count(),
        "waiting": len(set().union(*waiting.values())) if waiting else 0,
        "active_threads": Thread.objects.filter(updated_at__gte=now - timedelta(hours=1)).count(),
        "messages_24h": Message.objects.filter(created_at__gte=now - timedelta(hours=24)).count(),
        "urgent_unanswered": len(unanswered_urgent()),
    }


def unanswered_urgent() -> list[UUID]:
    """Ids of urgent messages that no human message follows in their thread. Two queries.

    Done as two scans and a comparison here: the correlated "is there a later
    human message" subquery walks the rest of the thread once per urgent
    message, which takes seconds on a 100,000-message thread.
    """
    last_human = dict(
        Message.objects.filter(role="user")
        .order_by()
        .values("thread_id")
        .annotate(m=Max("seq"))
        .values_list("thread_id", "m")
    )
    urgent = Message.objects.filter(priority="urgent").exclude(role="user").values_list("pk", "thread_id", "seq")
    return [pk for pk, thread_id, seq in urgent if seq > last_human.get(thread_id, 0)]


# --- the queues: requests for a human, overdue replies ------------------------------


def _message_url(thread_id, seq: int) -> str:
    return reverse("admin:threads_thread_change", args=[thread_id]) + f"#msg-{seq}"


@dataclass
class QueueItem:
    """One line of a console queue: a message, who it concerns and since when."""

    url: str
    thread: str
    seq: int
    who: str
    whom: str
    since: datetime
    preview: str
    msg_id: str


def human_queue(*, thread_id: UUID | str | None = None, size: int = QUEUE_SIZE) -> tuple[list[QueueItem], int]:
    """Open requests for a human, oldest first, and their number. Two queries."""
    requests, total = thread_selectors.open_human_requests(thread_id=thread_id, limit=size)
    return [
        QueueItem(
            url=_message_url(r.thread_id, r.message.seq),
            thread=r.thread.topic,
            seq=r.message.seq,
            who=r.message.author_name,
            whom="a human",
            since=r.created_at,
            preview=Truncator(r.message.content).chars(160),
            msg_id=str(r.message_id),
        )
        for r in requests
    ], total


def overdue_queue(
    *, thread_id: UUID | str | None = None, size: int = QUEUE_SIZE, now: datetime | None = None
) -> list[QueueItem]:
    """Overdue replies, oldest first: who owes a reply to whom, since when. Two queries."""
    return [
        QueueItem(
            url=_message_url(o.thread.pk, o.message.seq),
            thread=o.thread.topic,
            seq=o.message.seq,
            who=agent_name(o.agent),
            whom=o.message.author_name,
            since=o.since,
            preview=Truncator(o.message.content).chars(160),
            msg_id=str(o.message.pk),
        )
        for o in thread_selectors.overdue_replies(thread_id=thread_id, now=now, limit=size)
    ]


def queues_html(*, now: datetime | None = None) -> str:
    """The dashboard's two queues, rendered (the live socket sends them after every change)."""
    requests, total = human_queue()
    return render_to_string(
        "console/queues.html", {"requests": requests, "requests_total": total, "overdue": overdue_queue(now=now)}
    )
