"""Threads: creation, state changes, closing and archiving (by agents, the admin and cron alike).

Who may change a thread: its administrator (the creator, until the role is
handed on with `set_administrator`) and staff users. Each function that
changes a thread for someone takes that someone as `agent=` or
`staff_user=` and checks it here, so the ops, the admin and any other
transport apply one rule. Cron's sweep (`close_idle_threads`) acts for the
bus itself.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from agentchat import ratelimit
from agentchat.errors import BadRequest, Conflict, Forbidden, InvalidTransition, NotFound
from agents import services as agent_services
from agents.models import Agent
from threads.models import Thread, ThreadTemplate
from threads.services.announcements import announce_status
from threads.services.cursors import Advance, advance_cursors
from threads.services.locks import lock_thread
from threads.services.reply_tokens import SyncContext, issue_reply_token


def clean_topic(topic: str) -> str:
    """A topic as stored: stripped, never empty (its length is capped at the edge)."""
    topic = topic.strip()
    if not topic:
        raise BadRequest("topic must not be empty.", field="topic")
    return topic


def insert_thread(
    *,
    topic: str,
    creator: Agent | None,
    system_prompt: str = "",
    template: ThreadTemplate | None = None,
    metadata: dict | None = None,
) -> Thread:
    """Insert a thread, or raise IntegrityError when an open thread has the topic."""
    metadata = metadata or {}
    if template is not None:
        system_prompt = system_prompt or template.system_prompt
        metadata = {**template.default_metadata, **metadata}
    now = timezone.now()
    with transaction.atomic():  # a savepoint: the caller's transaction survives the IntegrityError
        return Thread.objects.create(
            topic=topic,
            creator=creator,
            administrator=creator,
            system_prompt=system_prompt,
            template=template,
            metadata=metadata,
            created_at=now,
            updated_at=now,
        )


@transaction.atomic
def create_thread(
    *,
    agent: Agent,
    topic: str,
    system_prompt: str = "",
    template_id: str | None = None,
    metadata: dict | None = None,
) -> tuple[Thread, SyncContext]:
    """Create a thread with `agent` as its administrator."""
    topic = clean_topic(topic)
    template = None
    if template_id is not None:
        template = ThreadTemplate.objects.filter(pk=template_id).first()
        if template is None:
            raise NotFound("template")
    check_thread_rate(agent, now=timezone.now())
    try:
        thread = insert_thread(
            topic=topic, creator=agent, system_prompt=system_prompt, template=template, metadata=metadata
        )
    except IntegrityError:
        raise Conflict(f"A thread with topic {topic!r} already exists.") from None
    advance_cursors([Advance(thread_id=thread.pk, agent_id=agent.pk)])  # the creator takes part
    return thread, issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=0)


def check_thread_rate(agent: Agent, *, now: datetime) -> None:
    """Lock the agent's row (checking its credentials); RateLimited past THREAD_RATE_PER_MINUTE.

    The row lock serializes the agent's thread creations across processes,
    so the count is exact.
    """
    agent_services.lock_agent(agent)
    ratelimit.enforce(
        Thread.objects.filter(creator=agent),
        field="created_at",
        limit=settings.AGENTCHAT["THREAD_RATE_PER_MINUTE"],
        now=now,
        what="threads created",
    )


def check_administrator(thread: Thread, *, agent: Agent | None = None, staff_user: Any = None) -> None:
    """Forbidden unless the actor administers the thread: its administrator agent, or an active staff user.

    Exactly one of `agent` and `staff_user` is given. The caller holds the
    thread's row lock; an agent's row is locked too (checking its credentials,
    thread first, then agent, as posts do).
    """
    if (agent is None) == (staff_user is None):
        raise TypeError("Give exactly one actor: agent= or staff_user=.")
    if staff_user is not None:
        if not (staff_user.is_active and staff_user.is_staff):
            raise Forbidden("Only staff users change threads from the console.")
        return
    agent_services.lock_agent(agent)
    if thread.administrator_id != agent.pk:
        raise Forbidden(
            "Only the thread's administrator (administrator_agent_id) or staff may close, archive, "
            "reopen or change the state of this thread."
        )


@transaction.atomic
def set_thread_state(*, thread_id: str, state: str, agent: Agent | None = None, staff_user: Any = None) -> Thread:
    """Move a thread among the open states, reopening it if it was closed or archived (administrator or staff)."""
    if state in (Thread.Status.CLOSED, Thread.Status.ARCHIVED):
        raise InvalidTransition(f"Use thread_{'close' if state == 'closed' else 'archive'} to reach {state!r}.")
    if state not in Thread.OPEN_STATES:
        raise BadRequest(f"state must be one of {', '.join(Thread.OPEN_STATES)}.", field="state")
    thread = lock_thread(thread_id)
    check_administrator(thread, agent=agent, staff_user=staff_user)
    if thread.status == state:
        return thread  # nothing changes, nothing is announced
    previous = thread.status
    thread.status = state
    thread.closed_at = None
    thread.updated_at = timezone.now()
    try:
        with transaction.atomic():
            thread.save(update_fields=["status", "closed_at", "updated_at"])
    except IntegrityError:
        raise Conflict(f"Another open thread already uses the topic {thread.topic!r}.") from None
    announce_status(thread, previous=previous, agent=agent, staff_user=staff_user)
    return thread


def close_threads(threads: QuerySet, *, now: datetime) -> int:
    """Close the open threads among `threads` in one conditional UPDATE; return how many.

    The one rule for closing: closed and archived threads are left as they
    are, so closing twice (or from two places at once) is harmless.
    """
    return threads.filter(status__in=Thread.OPEN_STATES).update(
        status=Thread.Status.CLOSED, closed_at=now, updated_at=now
    )


@transaction.atomic
def close_thread(
    *,
    thread_id: str,
    summary: str | None = None,
    now: datetime | None = None,
    agent: Agent | None = None,
    staff_user: Any = None,
) -> Thread:
    """Close a thread, optionally with a summary (administrator or staff; harmless when it is already closed)."""
    thread = lock_thread(thread_id)
    check_administrator(thread, agent=agent, staff_user=staff_user)
    if thread.status == Thread.Status.ARCHIVED:
        return thread
    previous = thread.status
    closed = close_threads(Thread.objects.filter(pk=thread.pk), now=now or timezone.now())
    if summary is not None:
        Thread.objects.filter(pk=thread.pk).update(summary=summary)
    thread.refresh_from_db()
    if closed:
        announce_status(thread, previous=previous, agent=agent, staff_user=staff_user)
    return thread


def idle_threads(*, minutes: int, now: datetime | None = None) -> QuerySet:
    """Open threads without activity for `minutes`."""
    cutoff = (now or timezone.now()) - timedelta(minutes=minutes)
    return Thread.objects.filter(status__in=Thread.OPEN_STATES, updated_at__lt=cutoff)


def close_idle_threads(*, minutes: int, dry_run: bool = False, now: datetime | None = None) -> list[Thread]:
    """Close open threads idle for `minutes`; return them (with dry_run, those that would be closed)."""
    now = now or timezone.now()
    stale = list(idle_threads(minutes=minutes, now=now).order_by("updated_at"))
    if dry_run or not stale:
        return stale
    ids = [thread.pk for thread in stale]
    # The idle condition is checked again by the UPDATE: a post landing meanwhile keeps its thread open.
    closed = close_threads(idle_threads(minutes=minutes, now=now).filter(pk__in=ids), now=now)
    if closed != len(stale):
        stale = list(
            Thread.objects.filter(pk__in=ids, status=Thread.Status.CLOSED, closed_at=now).order_by("updated_at")
        )
    for thread in stale:
        with transaction.atomic():
            announce_status(lock_thread(thread.pk), previous=thread.status, idle_minutes=minutes)
    return stale


@transaction.atomic
def archive_thread(*, thread_id: str, agent: Agent | None = None, staff_user: Any = None) -> Thread:
    """Archive a thread (administrator or staff; harmless when it is already archived); its topic becomes free."""
    thread = lock_thread(thread_id)
    check_administrator(thread, agent=agent, staff_user=staff_user)
    if thread.status != Thread.Status.ARCHIVED:
        previous = thread.status
        now = timezone.now()
        thread.status = Thread.Status.ARCHIVED
        thread.closed_at = thread.closed_at or now
        thread.updated_at = now
        thread.save(update_fields=["status", "closed_at", "updated_at"])
        announce_status(thread, previous=previous, agent=agent, staff_user=staff_user)
    return thread
