"""
Thread and message operations: the rules of the bus.

Where a message gets its seq: `post_message`, which locks the thread row,
checks the sync rules, bumps `Thread.last_seq`, consumes the reply token and
inserts the message in one transaction, then wakes the waiters after commit.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from agentchat import tokens
from agentchat.errors import (
    BadRequest,
    Conflict,
    ContentBlocked,
    InvalidTransition,
    MissingSyncFields,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ReplyTokenExpired,
    ReplyTokenInvalid,
    ReplyTokenReplay,
    SeqMismatch,
    ThreadClosed,
)
from agents import services as agent_services
from agents.models import Agent
from agents.serializers import iso
from threads import events, selectors
from threads.content_filter import find_secret
from threads.models import Message, ReplyToken, Thread, ThreadTemplate
from threads.serializers import messages_to_list

# Prepended to every thread's own prompt in bus_connect.
BUS_GUIDANCE = (
    "You are one of several agents collaborating in a shared AgentChat thread. "
    "Read every new message before you post: each post must carry the reply_token "
    "and expected_last_seq from your latest msg_wait, msg_post or bus_connect. "
    "If a post is refused with SeqMismatch, read the new_messages it carries and "
    "call msg_wait for a fresh token. Wait with msg_wait instead of polling, keep "
    "posts short and concrete, and mention an agent (metadata.mentions) or hand "
    "off (metadata.handoff_target) when you need a specific agent to act."
)

STOP_REASONS = {"convergence", "timeout", "error", "complete", "impasse"}
MAX_TOPIC_CHARS = 300
NEW_MESSAGES_ON_MISMATCH = 100


@dataclass
class SyncContext:
    current_seq: int
    reply_token: str
    expires_at: datetime
    max_new_messages: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "current_seq": self.current_seq,
            "reply_token": self.reply_token,
            "reply_window": {"expires_at": iso(self.expires_at), "max_new_messages": self.max_new_messages},
        }


def issue_reply_token(
    *, thread: Thread, agent: Agent, current_seq: int, void_older: bool = False, now: datetime | None = None
) -> SyncContext:
    """Give the agent a token to post once in the thread, having read up to `current_seq`."""
    now = now or timezone.now()
    if void_older:
        _void_tokens(thread=thread, agent=agent, now=now)
    conf = settings.AGENTCHAT
    token = tokens.new_token()
    expires_at = now + timedelta(seconds=conf["REPLY_TOKEN_LEASE_SECONDS"])
    ReplyToken.objects.create(
        token_hash=tokens.hash_token(token),
        thread=thread,
        agent=agent,
        issued_seq=current_seq,
        created_at=now,
        expires_at=expires_at,
    )
    return SyncContext(
        current_seq=current_seq, reply_token=token, expires_at=expires_at, max_new_messages=conf["SEQ_TOLERANCE"]
    )


def _void_tokens(*, thread: Thread, agent: Agent, now: datetime) -> None:
    ReplyToken.objects.filter(thread=thread, agent=agent, consumed_at__isnull=True, voided_at__isnull=True).update(
        voided_at=now
    )


# --- threads -----------------------------------------------------------------


def _clean_topic(topic: str) -> str:
    topic = topic.strip()
    if not topic:
        raise BadRequest("topic must not be empty.", field="topic")
    if len(topic) > MAX_TOPIC_CHARS:
        raise BadRequest(f"topic is longer than {MAX_TOPIC_CHARS} characters.", field="topic")
    return topic


def _get_template(template_id: str | None) -> ThreadTemplate | None:
    if template_id is None:
        return None
    try:
        return ThreadTemplate.objects.get(pk=template_id)
    except ThreadTemplate.DoesNotExist:
        raise NotFound("template") from None


def _insert_thread(
    *, topic: str, creator: Agent | None, system_prompt: str, template: ThreadTemplate | None, metadata: dict
) -> Thread:
    """Insert a thread, or raise IntegrityError when the topic is in use."""
    if template is not None:
        system_prompt = system_prompt or template.system_prompt
        metadata = {**template.default_metadata, **metadata}
    now = timezone.now()
    with transaction.atomic():
        return Thread.objects.create(
            topic=topic,
            creator=creator,
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
    topic = _clean_topic(topic)
    template = _get_template(template_id)
    try:
        thread = _insert_thread(
            topic=topic, creator=agent, system_prompt=system_prompt, template=template, metadata=metadata or {}
        )
    except IntegrityError:
        raise Conflict(f"A thread with topic {topic!r} already exists.") from None
    return thread, issue_reply_token(thread=thread, agent=agent, current_seq=0)


@transaction.atomic
def set_thread_state(*, thread_id: str, state: str) -> Thread:
    """Move a thread among the open states, reopening it if it was closed or archived."""
    if state in (Thread.Status.CLOSED, Thread.Status.ARCHIVED):
        raise InvalidTransition(f"Use thread_{'close' if state == 'closed' else 'archive'} to reach {state!r}.")
    if state not in Thread.OPEN_STATES:
        raise BadRequest(f"state must be one of {', '.join(Thread.OPEN_STATES)}.", field="state")
    thread = _locked_thread(thread_id)
    thread.status = state
    thread.closed_at = None
    thread.updated_at = timezone.now()
    try:
        with transaction.atomic():
            thread.save(update_fields=["status", "closed_at", "updated_at"])
    except IntegrityError:
        raise Conflict(f"Another open thread already uses the topic {thread.topic!r}.") from None
    return thread


@transaction.atomic
def close_thread(*, thread_id: str, summary: str | None = None, now: datetime | None = None) -> Thread:
    """Close a thread (harmless when it is already closed)."""
    thread = _locked_thread(thread_id)
    if thread.status == Thread.Status.ARCHIVED:
        return thread
    now = now or timezone.now()
    if thread.status != Thread.Status.CLOSED:
        thread.status = Thread.Status.CLOSED
        thread.closed_at = now
        thread.updated_at = now
    if summary is not None:
        thread.summary = summary
    thread.save(update_fields=["status", "closed_at", "updated_at", "summary"])
    return thread


@transaction.atomic
def archive_thread(*, thread_id: str) -> Thread:
    """Archive a thread (harmless when it is already archived); its topic becomes free."""
    thread = _locked_thread(thread_id)
    if thread.status != Thread.Status.ARCHIVED:
        now = timezone.now()
        thread.status = Thread.Status.ARCHIVED
        thread.closed_at = thread.closed_at or now
        thread.updated_at = now
        thread.save(update_fields=["status", "closed_at", "updated_at"])
    return thread


def _locked_thread(thread_id: str) -> Thread:
    selectors.get_thread(thread_id=thread_id)  # NotFound for a bad or unknown id
    return Thread.objects.select_for_update().get(pk=thread_id)


# --- bus_connect ---------------------------------------------------------------


@dataclass
class Connection:
    agent: Agent
    token: str | None
    thread: Thread
    created: bool
    messages: list[Message]
    truncated: bool
    sync: SyncContext

    @property
    def is_administrator(self) -> bool:
        return self.thread.creator_id == self.agent.pk

    @property
    def system_prompt(self) -> str:
        return "\n\n".join(part for part in (BUS_GUIDANCE, self.thread.system_prompt) if part)


def join_thread(
    *, agent: Agent, thread_id: str | None = None, thread_name: str | None = None, after_seq: int = 0
) -> tuple[Thread, bool, list[Message], bool, SyncContext]:
    """Find (or create, by name) a thread and hand the agent what it needs to post."""
    created = False
    if thread_id is not None:
        thread = selectors.get_thread(thread_id=thread_id)
    else:
        topic = _clean_topic(thread_name or "")
        thread = Thread.objects.exclude(status=Thread.Status.ARCHIVED).filter(topic=topic).first()
        if thread is None:
            try:
                thread = _insert_thread(topic=topic, creator=agent, system_prompt="", template=None, metadata={})
                created = True
            except IntegrityError:  # another agent created it a moment ago
                thread = Thread.objects.exclude(status=Thread.Status.ARCHIVED).get(topic=topic)
    last_seq = thread.last_seq if created else Thread.objects.values_list("last_seq", flat=True).get(pk=thread.pk)
    thread.last_seq = last_seq
    messages, truncated = selectors.newest_messages(thread=thread, after_seq=after_seq, limit=50)
    current_seq = max(last_seq, messages[-1].seq if messages else 0)
    sync = issue_reply_token(thread=thread, agent=agent, current_seq=current_seq)
    return thread, created, messages, truncated, sync


@transaction.atomic
def bus_connect(
    *,
    agent: Agent | None,
    thread_id: str | None = None,
    thread_name: str | None = None,
    ide: str | None = None,
    model: str | None = None,
    agent_id: str | None = None,
    token: str | None = None,
    after_seq: int = 0,
) -> Connection:
    """Register or resume the agent (or keep the bound one), then join the thread."""
    if thread_id is None and thread_name is None:
        raise BadRequest("Give thread_name or thread_id.", field="thread_name")
    new_token = None
    if agent_id is not None or token is not None:
        if agent_id is None or token is None:
            raise BadRequest("agent_id and token go together.", field="token" if token is None else "agent_id")
        agent = agent_services.resume_agent(agent_id=agent_id, token=token)
    elif ide is not None or model is not None:
        if ide is None or model is None:
            raise BadRequest("ide and model go together.", field="model" if model is None else "ide")
        agent, new_token = agent_services.register_agent(ide=ide, model=model)
    elif agent is None:
        raise BadRequest("Give ide and model to register, or agent_id and token to resume.", field="ide")
    thread, created, messages, truncated, sync = join_thread(
        agent=agent, thread_id=thread_id, thread_name=thread_name, after_seq=after_seq
    )
    return Connection(
        agent=agent, token=new_token, thread=thread, created=created, messages=messages, truncated=truncated, sync=sync
    )


# --- posting -----------------------------------------------------------------


def _clean_metadata(metadata: Any, *, from_human: bool) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be an object.", field="metadata")
    if "mentions" in metadata:
        mentions = metadata["mentions"]
        if not isinstance(mentions, list) or not all(isinstance(m, str) for m in mentions):
            raise BadRequest("metadata.mentions must be a list of agent ids.", field="metadata.mentions")
    if "handoff_target" in metadata and not isinstance(metadata["handoff_target"], str):
        raise BadRequest("metadata.handoff_target must be an agent id.", field="metadata.handoff_target")
    if "stop_reason" in metadata and metadata["stop_reason"] not in STOP_REASONS:
        raise BadRequest(
            f"metadata.stop_reason must be one of {', '.join(sorted(STOP_REASONS))}.", field="metadata.stop_reason"
        )
    if "visibility" in metadata:
        if not from_human:
            raise BadRequest("Only humans may set metadata.visibility.", field="metadata.visibility")
        if metadata["visibility"] != "human_only":
            raise BadRequest("metadata.visibility must be 'human_only'.", field="metadata.visibility")
    return metadata


def _clean_content(content: str) -> str:
    limit = settings.AGENTCHAT["MAX_MESSAGE_CHARS"]
    if not content.strip():
        raise BadRequest("content must not be empty.", field="content")
    if len(content) > limit:
        raise PayloadTooLarge(f"content is longer than {limit} characters.", field="content", limit=limit)
    return content


def _check_choice(value: str, choices: type, field_name: str) -> None:
    if value not in choices.values:
        raise BadRequest(f"{field_name} must be one of {', '.join(choices.values)}.", field=field_name)


def _targets(metadata: dict[str, Any]) -> list[str]:
    """The agents a message is addressed to (for waiters with for_agent)."""
    targets = list(metadata.get("mentions") or [])
    if metadata.get("handoff_target"):
        targets.append(metadata["handoff_target"])
    return targets


def _check_rate_limit(agent: Agent, now: datetime) -> None:
    limit = settings.AGENTCHAT["RATE_LIMIT_PER_MINUTE"]
    if not limit:
        return
    window_start = now - timedelta(seconds=60)
    recent = list(
        Message.objects.filter(author=agent, created_at__gt=window_start)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) >= limit:
        retry_after = max(1, math.ceil((recent[-1] - window_start).total_seconds()))
        raise RateLimited(f"More than {limit} posts in a minute.", retry_after=retry_after)


def _replayed(agent: Agent, client_msg_id: str | None) -> Message | None:
    if client_msg_id is None:
        return None
    return Message.objects.filter(author=agent, client_msg_id=client_msg_id).first()


@dataclass
class _Refusal:
    """A SeqMismatch decided inside the transaction, raised after its commit."""

    current_seq: int
    new_messages: list[dict[str, Any]] = field(default_factory=list)


def post_message(
    *,
    agent: Agent,
    thread_id: str,
    content: str,
    expected_last_seq: int | None,
    reply_token: str | None,
    role: str = Message.Role.ASSISTANT,
    priority: str = Message.Priority.NORMAL,
    reply_to_msg_id: str | None = None,
    metadata: dict | None = None,
    client_msg_id: str | None = None,
    now: datetime | None = None,
) -> tuple[Message, SyncContext]:
    """Post under the sync rules (PROTOCOL.md, "msg_post and the sync rules")."""
    replayed = _replayed(agent, client_msg_id)
    if replayed is not None:
        return replayed, _replay_context(replayed, agent)
    if expected_last_seq is None or reply_token is None:
        raise MissingSyncFields("msg_post needs expected_last_seq and reply_token; get them from msg_wait.")
    content = _clean_content(content)
    _check_choice(role, Message.Role, "role")
    _check_choice(priority, Message.Priority, "priority")
    metadata = _clean_metadata(metadata, from_human=False)
    if expected_last_seq < 0:
        raise BadRequest("expected_last_seq must not be negative.", field="expected_last_seq")
    selectors.get_thread(thread_id=thread_id)  # NotFound before any lock
    try:
        outcome = _post_locked(
            agent=agent,
            thread_id=thread_id,
            content=content,
            expected_last_seq=expected_last_seq,
            reply_token=reply_token,
            role=role,
            priority=priority,
            reply_to_msg_id=reply_to_msg_id,
            metadata=metadata,
            client_msg_id=client_msg_id,
            now=now or timezone.now(),
        )
    except IntegrityError:
        # The same client_msg_id committed by a concurrent retry in another thread.
        replayed = _replayed(agent, client_msg_id)
        if replayed is None:
            raise
        return replayed, _replay_context(replayed, agent)
    if isinstance(outcome, _Refusal):
        raise SeqMismatch(
            f"The thread moved on to seq {outcome.current_seq}; "
            "read the new messages, then msg_wait for a fresh token.",
            current_seq=outcome.current_seq,
            new_messages=outcome.new_messages,
        )
    return outcome


@transaction.atomic
def _post_locked(
    *,
    agent: Agent,
    thread_id: str,
    content: str,
    expected_last_seq: int,
    reply_token: str,
    role: str,
    priority: str,
    reply_to_msg_id: str | None,
    metadata: dict,
    client_msg_id: str | None,
    now: datetime,
) -> tuple[Message, SyncContext] | _Refusal:
    # The row lock serializes posts to one thread: seq allocation, the token
    # and the insert below all see one consistent state.
    thread = Thread.objects.select_for_update().get(pk=thread_id)
    replayed = _replayed(agent, client_msg_id)  # a retry that won the lock first
    if replayed is not None:
        return replayed, _replay_context(replayed, agent)

    token = ReplyToken.objects.filter(token_hash=tokens.hash_token(reply_token)).first()
    if token is None or token.thread_id != thread.pk or token.agent_id != agent.pk or token.voided_at:
        raise ReplyTokenInvalid("This reply token is not valid for this agent and thread.")
    if token.consumed_at is not None:
        raise ReplyTokenReplay("This reply token was already used; use the one your last post returned.")
    if token.expires_at <= now:
        raise ReplyTokenExpired("This reply token's lease ran out; call msg_wait for a fresh one.")

    if expected_last_seq > thread.last_seq:
        raise BadRequest(
            f"expected_last_seq {expected_last_seq} is ahead of the thread (seq {thread.last_seq}).",
            field="expected_last_seq",
        )
    if thread.last_seq - expected_last_seq > settings.AGENTCHAT["SEQ_TOLERANCE"]:
        _void_tokens(thread=thread, agent=agent, now=now)
        missed = selectors.list_messages(thread=thread, after_seq=expected_last_seq, limit=NEW_MESSAGES_ON_MISMATCH)
        return _Refusal(current_seq=thread.last_seq, new_messages=messages_to_list(missed))

    if not thread.is_open:
        raise ThreadClosed(f"The thread is {thread.status}.")
    _check_rate_limit(agent, now)
    if settings.AGENTCHAT["CONTENT_FILTER_ENABLED"]:
        pattern = find_secret(content)
        if pattern is not None:
            raise ContentBlocked(f"The content looks like it holds a secret ({pattern}).", pattern=pattern)
    reply_to = None
    if reply_to_msg_id is not None:
        reply_to = selectors.get_message(msg_id=reply_to_msg_id)
        if reply_to.thread_id != thread.pk:
            raise NotFound("message", "reply_to_msg_id is not a message of this thread.")

    message = _append(
        thread=thread,
        now=now,
        author=agent,
        author_name=agent.name,
        role=role,
        content=content,
        priority=priority,
        reply_to=reply_to,
        metadata=metadata,
        client_msg_id=client_msg_id,
    )
    token.consumed_at = now
    token.save(update_fields=["consumed_at"])
    return message, issue_reply_token(thread=thread, agent=agent, current_seq=message.seq, now=now)


def _append(*, thread: Thread, now: datetime, **fields: Any) -> Message:
    """Give the next seq to a new message of a locked thread, and wake its waiters after commit."""
    thread.last_seq += 1
    thread.updated_at = now
    thread.save(update_fields=["last_seq", "updated_at"])
    message = Message.objects.create(thread=thread, seq=thread.last_seq, created_at=now, **fields)
    thread_pk, seq, targets = thread.pk, message.seq, _targets(message.metadata)
    transaction.on_commit(lambda: events.broadcast_message(thread_id=thread_pk, seq=seq, targets=targets))
    return message


def _replay_context(message: Message, agent: Agent) -> SyncContext:
    """The sync context of a replayed post: read up to the post itself, not beyond.

    The agent has read nothing after its own message (its reply was lost); a
    context at the thread's newest seq would let it post, and move a client's
    cursor, past messages others posted meanwhile. With this one, a post that
    is behind gets SeqMismatch and the agent reads them first.
    """
    return issue_reply_token(thread=message.thread, agent=agent, current_seq=message.seq)


@transaction.atomic
def post_human_message(
    *, thread: Thread, content: str, author_name: str, human_only: bool = False, priority: str = "normal"
) -> Message:
    """Post as a human (role `user`), e.g. from the admin. No sync rules apply."""
    content = _clean_content(content)
    _check_choice(priority, Message.Priority, "priority")
    thread = Thread.objects.select_for_update().get(pk=thread.pk)
    if not thread.is_open:
        raise ThreadClosed(f"The thread is {thread.status}.")
    return _append(
        thread=thread,
        now=timezone.now(),
        author=None,
        author_name=author_name,
        role=Message.Role.USER,
        content=content,
        priority=priority,
        metadata={"visibility": "human_only"} if human_only else {},
    )


# --- msg_wait ------------------------------------------------------------------


def finish_wait(*, agent: Agent, thread_id: str, read_seq: int) -> SyncContext:
    """End a msg_wait: void the agent's older tokens and issue a fresh one."""
    thread = selectors.get_thread(thread_id=thread_id)
    with transaction.atomic():
        return issue_reply_token(thread=thread, agent=agent, current_seq=read_seq, void_older=True)


@dataclass(frozen=True)
class WaitRequest:
    """One look at a thread on behalf of a msg_wait."""

    agent: Agent
    thread_id: str
    after_seq: int
    limit: int
    for_agent: str | None
    # End the wait even with nothing to return (its timeout has passed).
    finish: bool


@dataclass
class WaitResult:
    messages: list[Message]
    has_more: bool
    read_seq: int
    # Set when the wait ends: the fresh token that voided the agent's older ones.
    sync: SyncContext | None


def serve_waits(requests: list[WaitRequest], *, now: datetime | None = None) -> list[WaitResult | NotFound]:
    """Serve many msg_wait looks at once: what each would return, and tokens for those that end.

    A post wakes every waiter of a thread at the same moment; serving them as
    one batch costs one read per distinct (thread, after_seq, filter, limit)
    and two writes for all the new tokens, instead of a handful of statements
    per waiter.
    """
    now = now or timezone.now()
    reads: dict[tuple, selectors.WaitRead | NotFound] = {}
    for r in requests:
        key = (r.thread_id, r.after_seq, r.for_agent, r.limit)
        if key not in reads:
            try:
                reads[key] = selectors.read_for_wait(
                    thread_id=r.thread_id, after_seq=r.after_seq, limit=r.limit, for_agent=r.for_agent
                )
            except NotFound as error:
                reads[key] = error

    results: list[WaitResult | NotFound] = []
    ending: list[tuple[WaitResult, WaitRequest]] = []
    for r in requests:
        read = reads[(r.thread_id, r.after_seq, r.for_agent, r.limit)]
        if isinstance(read, NotFound):
            results.append(read)
            continue
        result = WaitResult(messages=read.messages, has_more=read.has_more, read_seq=read.read_seq, sync=None)
        results.append(result)
        if read.messages or r.finish:
            ending.append((result, r))
    if ending:
        _issue_wait_tokens(ending, now=now)
    return results


@transaction.atomic
def _issue_wait_tokens(ending: list[tuple[WaitResult, WaitRequest]], *, now: datetime) -> None:
    """Void the older tokens of the agents whose waits end, then give each a fresh one."""
    conf = settings.AGENTCHAT
    expires_at = now + timedelta(seconds=conf["REPLY_TOKEN_LEASE_SECONDS"])
    by_thread: dict[str, set] = {}
    for _result, r in ending:
        by_thread.setdefault(r.thread_id, set()).add(r.agent.pk)
    for thread_id, agent_ids in by_thread.items():
        ReplyToken.objects.filter(
            thread_id=thread_id, agent_id__in=agent_ids, consumed_at__isnull=True, voided_at__isnull=True
        ).update(voided_at=now)
    rows = []
    for result, r in ending:
        token = tokens.new_token()
        rows.append((tokens.hash_token(token), r.thread_id, r.agent.pk, result.read_seq))
        result.sync = SyncContext(
            current_seq=result.read_seq,
            reply_token=token,
            expires_at=expires_at,
            max_new_messages=conf["SEQ_TOLERANCE"],
        )
    _insert_tokens(rows, created_at=now, expires_at=expires_at)
    # An ending wait counts as a heartbeat: the agent's own heartbeats resume from here.
    agent_services.refresh_heartbeats(agent_ids={r.agent.pk for _result, r in ending}, now=now)


def _insert_tokens(rows: list[tuple[str, str, Any, int]], *, created_at: datetime, expires_at: datetime) -> None:
    """Insert (token_hash, thread_id, agent_id, issued_seq) rows as multi-row INSERTs.

    The same as ReplyToken.objects.bulk_create, without building a model
    instance and compiling parameters per row: for the 1,000 tokens of a wake-up
    that is most of the batch's time.
    """
    fields = {f.name: f for f in ReplyToken._meta.concrete_fields}
    columns = ["token_hash", "thread", "agent", "issued_seq", "created_at", "expires_at"]
    prepare = [fields[name].get_db_prep_value for name in columns]
    moments = [
        fields["created_at"].get_db_prep_value(created_at, connection),
        fields["expires_at"].get_db_prep_value(expires_at, connection),
    ]
    sql_columns = ", ".join(connection.ops.quote_name(fields[name].column) for name in columns)
    table = connection.ops.quote_name(ReplyToken._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 1000):  # 6,000 parameters a statement at most
            chunk = rows[start : start + 1000]
            params = []
            for row in chunk:
                params.extend(prep(value, connection) for prep, value in zip(prepare[:4], row))
                params.extend(moments)
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(f"INSERT INTO {table} ({sql_columns}) VALUES {values}", params)


# --- cron ----------------------------------------------------------------------


def idle_threads(*, minutes: int, now: datetime | None = None):
    cutoff = (now or timezone.now()) - timedelta(minutes=minutes)
    return Thread.objects.filter(status__in=Thread.OPEN_STATES, updated_at__lt=cutoff)


def close_idle_threads(*, minutes: int, dry_run: bool = False, now: datetime | None = None) -> int:
    """Close open threads without activity for `minutes`, in one conditional UPDATE."""
    now = now or timezone.now()
    stale = idle_threads(minutes=minutes, now=now)
    if dry_run:
        return stale.count()
    return stale.update(status=Thread.Status.CLOSED, closed_at=now, updated_at=now)


def purge_reply_tokens(*, dry_run: bool = False, now: datetime | None = None) -> int:
    """Delete reply tokens that can never be used again: consumed, voided or expired."""
    now = now or timezone.now()
    dead = ReplyToken.objects.filter(Q(consumed_at__isnull=False) | Q(voided_at__isnull=False) | Q(expires_at__lte=now))
    if dry_run:
        return dead.count()
    deleted, _ = dead.delete()
    return deleted
