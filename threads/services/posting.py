"""
Posting: where a message gets its seq.

Every message enters a thread through `append_message`, under the thread's
row lock: agents' posts (`post_message`, after the sync rules) and humans'
posts from the admin (`post_human_message`) alike.
"""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentchat import ratelimit
from agentchat.errors import (
    BadRequest,
    ContentBlocked,
    MissingSyncFields,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    RateLimited,
    ReplyTokenInvalid,
    ReplyTokenReplay,
    SeqMismatch,
    ThreadClosed,
)
from agentchat.transport import reply_budget, size, take_within
from agents.models import Agent
from threads import events, search, selectors
from threads.content_filter import find_secret
from threads.models import Message, Thread, addressees
from threads.serializers import message_to_dict, messages_to_list
from threads.services import human_requests, statements
from threads.services.cursors import Advance, advance_cursors, delivery, upserts
from threads.services.locks import lock_thread
from threads.services.reply_tokens import (
    Claims,
    SyncContext,
    check_reply_token,
    issue_reply_token,
    read_reply_token,
    void_all_before,
)

STOP_REASONS = {"convergence", "timeout", "error", "complete", "impasse"}
# A SeqMismatch carries at most this many of the messages the agent missed
# (fewer when they would not fit in a reply).
NEW_MESSAGES_ON_MISMATCH = 100
# What a message takes in a reply besides its content, metadata and author
# name: ids, seq, role, priority, timestamps and the keys (about 450 bytes).
MESSAGE_FIXED_BYTES = 1024


def largest_message_bytes(max_chars: int) -> int:
    """The most a message of `max_chars` characters without metadata can take in a reply.

    A character takes at most 6 bytes in JSON (`\\u001f`); the author's name is at most 200 characters.
    """
    return 6 * max_chars + 6 * max_length_of_author_name() + MESSAGE_FIXED_BYTES


def max_length_of_author_name() -> int:
    return Message._meta.get_field("author_name").max_length


def check_message_size(*, content: str, metadata: dict[str, Any], author_name: str) -> None:
    """Refuse a message that could not be sent in a reply (MAX_REPLY_BYTES): no list or wait could return it."""
    budget = reply_budget()
    content_bytes, metadata_bytes = size(content), size(metadata)
    needed = content_bytes + metadata_bytes + size(author_name) + MESSAGE_FIXED_BYTES
    if needed > budget:
        field = "metadata" if metadata_bytes > content_bytes else "content"
        raise PayloadTooLarge(
            f"This message would take {needed} bytes in a reply; replies carry at most {budget}.",
            field=field,
            limit=budget,
        )


def clean_content(content: str) -> str:
    """Content as every message needs it: not blank, at most MAX_MESSAGE_CHARS characters."""
    limit = settings.AGENTCHAT["MAX_MESSAGE_CHARS"]
    if not content.strip():
        raise BadRequest("content must not be empty.", field="content")
    if len(content) > limit:
        raise PayloadTooLarge(f"content is longer than {limit} characters.", field="content", limit=limit)
    return content


def check_content(content: str) -> None:
    """Apply the content filter: ContentBlocked when the content looks like it holds a secret.

    Posts and edits alike pass through here (after clean_content).
    """
    if not settings.AGENTCHAT["CONTENT_FILTER_ENABLED"]:
        return
    pattern = find_secret(content)
    if pattern is not None:
        raise ContentBlocked(f"The content looks like it holds a secret ({pattern}).", pattern=pattern)


def clean_metadata(metadata: dict[str, Any] | None, *, from_human: bool) -> dict[str, Any]:
    """Check the keys of message metadata that the bus gives a meaning to."""
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
    if "needs_human" in metadata and not isinstance(metadata["needs_human"], bool):
        raise BadRequest("metadata.needs_human must be true or false.", field="metadata.needs_human")
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


def check_choice(value: str, choices: type, field_name: str) -> None:
    if value not in choices.values:
        raise BadRequest(f"{field_name} must be one of {', '.join(choices.values)}.", field=field_name)


def check_agent_role(role: str, priority: str) -> None:
    """Agents post as agents: role `user` is the humans' (the console's), role and priority `system` the bus's."""
    check_choice(role, Message.Role, "role")
    check_choice(priority, Message.Priority, "priority")
    if role != Message.Role.ASSISTANT:
        raise BadRequest(
            f"Agents post with role 'assistant'; {role!r} is reserved for "
            f"{'humans (the console)' if role == Message.Role.USER else 'the bus'}.",
            field="role",
        )
    if priority == Message.Priority.SYSTEM:
        raise BadRequest("Priority 'system' is reserved for the bus; use 'normal' or 'urgent'.", field="priority")


def _rate_limit_refusal(agent: Agent, now: datetime) -> RateLimited | None:
    """The RateLimited error past RATE_LIMIT_PER_MINUTE posts (the caller holds the agent's row lock), else None."""
    if not settings.AGENTCHAT["RATE_LIMIT_PER_MINUTE"]:
        return None
    try:
        ratelimit.enforce(
            Message.objects.filter(author=agent),
            field="created_at",
            limit=settings.AGENTCHAT["RATE_LIMIT_PER_MINUTE"],
            now=now,
            what="posts",
        )
    except RateLimited as error:
        return error
    return None


def append_message(
    *,
    thread: Thread,
    now: datetime,
    author: Agent | None,
    author_name: str,
    role: str,
    content: str,
    priority: str,
    metadata: dict[str, Any],
    reply_to_msg_id: str | None = None,
    client_msg_id: str | None = None,
    from_bus: bool = False,
    rate_limited: RateLimited | None = None,
    token_nonce: int | None = None,
    author_read_seq: int | None = None,
) -> Message:
    """Append a message to a thread whose row the caller holds locked (and an agent author's row too).

    In order: refuse a closed thread, then an agent author over its rate limit
    (`rate_limited`, counted by the caller under the agent's row lock), apply
    the content filter, check the message replied to, then give the message
    the next seq, store it, index it for search, and wake the thread's
    waiters after commit. The bus's own announcements (`from_bus`) skip the
    state and the filter.
    """
    if not thread.is_open and not from_bus:
        raise ThreadClosed(f"The thread is {thread.status}.")
    if rate_limited is not None:
        raise rate_limited
    if not from_bus:
        check_content(content)
    reply_to = None
    if reply_to_msg_id is not None:
        reply_to = selectors.get_message(msg_id=reply_to_msg_id)
        if reply_to.thread_id != thread.pk:
            raise NotFound("message", "reply_to_msg_id is not a message of this thread.")

    thread.last_seq += 1
    thread.updated_at = now
    message = Message(
        thread=thread,
        seq=thread.last_seq,
        created_at=now,
        author=author,
        author_name=author_name,
        role=role,
        content=content,
        priority=priority,
        reply_to=reply_to,
        metadata=metadata,
        client_msg_id=client_msg_id,
        token_nonce=token_nonce,
    )
    cursors = []
    if author is not None and author_read_seq is not None:
        # An agent's post moves its cursors: what it read (its expected_last_seq) and the post.
        advance = Advance(thread_id=thread.pk, agent_id=author.pk, seen_seq=author_read_seq, last_post_seq=message.seq)
        cursors = upserts([advance], now=now)
    statements.store_message(thread, message, cursors)
    search.index_message(message, created=True)
    thread_pk, seq, targets = thread.pk, message.seq, addressees(message.metadata)
    as_agents_see_it = message_to_dict(message)
    transaction.on_commit(
        lambda: events.broadcast_message(thread_id=thread_pk, seq=seq, targets=targets, message=as_agents_see_it)
    )
    return message


def _replayed(agent: Agent, client_msg_id: str | None) -> Message | None:
    if client_msg_id is None:
        return None
    return Message.objects.filter(author=agent, client_msg_id=client_msg_id).first()


def _token_used(token: str | None, *, thread_id: str, agent: Agent) -> bool:
    try:
        claims = read_reply_token(token or "", thread_id=thread_id, agent_id=agent.pk)
    except (ReplyTokenInvalid, ValueError):
        return False
    return Message.objects.filter(token_nonce=claims.nonce).exists()


def _replay_context(message: Message, agent: Agent) -> SyncContext:
    """The sync context of a replayed post: read up to the post itself, not beyond.

    The agent has read nothing after its own message (its reply was lost); a
    context at the thread's newest seq would let it post, and move a client's
    cursor, past messages others posted meanwhile. With this one, a post that
    is behind gets SeqMismatch and the agent reads them first.
    """
    return issue_reply_token(thread_id=message.thread_id, agent_id=agent.pk, read_seq=message.seq)


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
    """Post under the sync rules (PROTOCOL.md, "msg_post and the sync rules").

    A retry with a `client_msg_id` already stored returns the stored message,
    whatever else it carries. That check is made once, under the thread's
    lock, on the way to storing the post; a request refused before the lock
    makes it first, so a retry is never refused.
    """
    try:
        if expected_last_seq is None or reply_token is None:
            raise MissingSyncFields("msg_post needs expected_last_seq and reply_token; get them from msg_wait.")
        content = clean_content(content)
        check_agent_role(role, priority)
        metadata = clean_metadata(metadata, from_human=False)
        check_message_size(content=content, metadata=metadata, author_name=agent.name)
    except ProtocolError:
        replayed = _replayed(agent, client_msg_id)
        if replayed is None:
            raise
        return replayed, _replay_context(replayed, agent)
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
        # The same client_msg_id committed by a concurrent retry in another thread,
        # or the same reply token used by a concurrent post.
        replayed = _replayed(agent, client_msg_id)
        if replayed is not None:
            return replayed, _replay_context(replayed, agent)
        if _token_used(reply_token, thread_id=thread_id, agent=agent):
            raise ReplyTokenReplay("This reply token was already used; use the one your last post returned.") from None
        raise
    except ProtocolError:
        # Refused under the lock (NotFound, a token error...): a retry of a stored post is still answered.
        replayed = _replayed(agent, client_msg_id)
        if replayed is None:
            raise
        return replayed, _replay_context(replayed, agent)
    if isinstance(outcome, SeqMismatch):
        raise outcome  # raised after the transaction committed the voiding of the agent's tokens
    return outcome


@transaction.atomic
def _post_locked(
    *, agent: Agent, thread_id: str, expected_last_seq: int, reply_token: str, now: datetime, **fields: Any
) -> tuple[Message, SyncContext] | SeqMismatch:
    # The row lock serializes posts to one thread: seq allocation, the token
    # and the insert below all see one consistent state. The same statement
    # looks for a stored retry (client_msg_id).
    thread = statements.lock_thread_for_post(thread_id, author=agent, client_msg_id=fields["client_msg_id"])
    if thread.replayed_id is not None:  # a retry that won the lock first
        replayed = Message.objects.get(pk=thread.replayed_id)
        return replayed, _replay_context(replayed, agent)
    # Then the agent's row (always thread first, then agent): it refuses
    # revoked credentials, and serializes the agent's posts in all threads and
    # processes, so that the rate limit's count is exact. The count is its own
    # statement after the lock: a subquery of the locking statement would read
    # the snapshot taken before the lock was granted, and miss the post that
    # held it. The token's state (used? voided?) rides in the agent's locking
    # statement: it starts once the thread's lock is granted, so it sees every
    # post of this thread committed before.
    try:
        claims: Claims | None = read_reply_token(reply_token, thread_id=thread.pk, agent_id=agent.pk)
    except ReplyTokenInvalid:
        claims = None
    token_used, void_before = statements.lock_agent_for_post(agent, thread=thread, claims=claims)
    rate_limited = _rate_limit_refusal(agent, now)
    if claims is None:
        raise ReplyTokenInvalid("This reply token is not valid for this agent and thread.")
    check_reply_token(claims, void_before=void_before, consumed=token_used, now=now)
    if expected_last_seq > thread.last_seq:
        raise BadRequest(
            f"expected_last_seq {expected_last_seq} is ahead of the thread (seq {thread.last_seq}).",
            field="expected_last_seq",
        )
    if thread.last_seq - expected_last_seq > settings.AGENTCHAT["SEQ_TOLERANCE"]:
        # Behind: void the agent's tokens (committed), then refuse with what it missed.
        missed = selectors.list_messages(thread=thread, after_seq=expected_last_seq, limit=NEW_MESSAGES_ON_MISMATCH)
        new_messages = take_within(messages_to_list(missed), reply_budget())
        # Handed to the agent in the error: delivered (committed with the voiding, in one statement).
        handed = delivery(
            thread_id=thread.pk,
            agent_id=agent.pk,
            messages=missed[: len(new_messages)],
            void_before=void_all_before(now),
        )
        advance_cursors([handed], now=now)
        return SeqMismatch(
            f"The thread moved on to seq {thread.last_seq}; read the new messages, then msg_wait for a fresh token.",
            current_seq=thread.last_seq,
            new_messages=new_messages,
            # Seqs are gap-free: more were missed than carried unless the last one is the thread's newest.
            has_more=bool(new_messages) and new_messages[-1]["seq"] < thread.last_seq,
        )

    message = append_message(
        thread=thread,
        now=now,
        author=agent,
        author_name=agent.name,
        rate_limited=rate_limited,
        token_nonce=claims.nonce,
        author_read_seq=expected_last_seq,
        **fields,
    )
    sync = issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=message.seq, now=now)
    if message.metadata.get("needs_human") is True:
        human_requests.open_request(message)
    return message, sync


@transaction.atomic
def post_human_message(
    *,
    thread: Thread,
    content: str,
    author_name: str,
    human_only: bool = False,
    priority: str = Message.Priority.NORMAL,
    reply_to_msg_id: str | None = None,
) -> Message:
    """Post as a human (role `user`), e.g. from the admin. No sync rules apply; every other rule does.

    A reply (`reply_to_msg_id`) to an open request for a human answers it:
    the answer mentions the asking agent (so it wakes even a wait filtered
    with for_agent) and the request leaves the queue.
    """
    content = clean_content(content)
    check_choice(priority, Message.Priority, "priority")
    thread = lock_thread(thread.pk)
    metadata: dict[str, Any] = {"visibility": "human_only"} if human_only else {}
    request = human_requests.open_request_for(msg_id=reply_to_msg_id) if reply_to_msg_id else None
    if request is not None and request.message.author_id is not None:
        metadata["mentions"] = [str(request.message.author_id)]
    message = append_message(
        thread=thread,
        now=timezone.now(),
        author=None,
        author_name=author_name,
        role=Message.Role.USER,
        content=content,
        priority=priority,
        metadata=metadata,
        reply_to_msg_id=reply_to_msg_id,
    )
    if request is not None:
        human_requests.resolve(request, answer=message, by=author_name, now=message.created_at)
    return message
