"""msg_wait's reads and endings, served in batches for the process's waiting room (threads/waiting_room.py)."""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from agentchat.errors import ProtocolError
from agentchat.transport import EncodedList
from agents import services as agent_services
from agents.models import Agent
from threads import selectors
from threads.models import Message
from threads.services.cursors import Advance, advance_cursors, delivery
from threads.services.reply_tokens import Grant, SyncContext, issue_reply_token, issue_reply_tokens


@transaction.atomic
def finish_wait(*, agent: Agent, thread_id: str, read_seq: int) -> SyncContext:
    """End a msg_wait: void the agent's older tokens and issue a fresh one."""
    thread = selectors.get_thread(thread_id=thread_id)
    return issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=read_seq, void_older=True)


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
    # `messages` as agents see them, encoded once for all the waits one read serves.
    payload: EncodedList = field(default_factory=EncodedList)


def serve_waits(
    requests: list[WaitRequest], *, now: datetime | None = None, later: list[Advance] | None = None
) -> list[WaitResult | ProtocolError]:
    """Serve many msg_wait looks at once: what each would return, and tokens for those that end.

    A post wakes every waiter of a thread at the same moment; serving them as
    one batch costs one read per distinct (thread, after_seq, filter, limit)
    and two writes for all the new tokens, instead of a handful of statements
    per waiter. The cursors of every agent in the batch (what it was handed,
    the `after_seq` it showed it read) cost one more statement for the batch:
    written here, or, given a `later` list, appended to it for the caller to
    write once the replies are on their way (the waiting room does, so that a
    wake-up's replies never wait for the cursors).
    """
    now = now or timezone.now()
    reads: dict[tuple, selectors.WaitRead | ProtocolError] = {}
    for r in requests:
        key = (r.thread_id, r.after_seq, r.for_agent, r.limit)
        if key not in reads:
            try:
                reads[key] = selectors.read_for_wait(
                    thread_id=r.thread_id, after_seq=r.after_seq, limit=r.limit, for_agent=r.for_agent
                )
            except ProtocolError as error:  # NotFound, or a message too large for any reply
                reads[key] = error

    results: list[WaitResult | ProtocolError] = []
    ending: list[tuple[WaitResult, WaitRequest]] = []
    advances: list[Advance] = []
    for r in requests:
        read = reads[(r.thread_id, r.after_seq, r.for_agent, r.limit)]
        if isinstance(read, ProtocolError):  # refused: no token issued, none voided
            results.append(read)
            continue
        result = WaitResult(
            messages=read.messages, has_more=read.has_more, read_seq=read.read_seq, sync=None, payload=read.payload
        )
        results.append(result)
        advances.append(
            delivery(
                thread_id=r.thread_id,
                agent_id=r.agent.pk,
                messages=read.messages,
                # What the agent showed it read, never past what the thread holds.
                seen_seq=min(r.after_seq, read.read_seq),
            )
        )
        if read.messages or r.finish:
            ending.append((result, r))
    if later is not None:
        later.extend(advances)
        advances = []
    if ending:
        _end_waits(ending, advances, now=now)
    elif advances:
        advance_cursors(advances, now=now)
    return results


@transaction.atomic
def _end_waits(ending: list[tuple[WaitResult, WaitRequest]], advances: list[Advance], *, now: datetime) -> None:
    """Give each ending wait its fresh token (voiding the agents' older ones), count it as a heartbeat.

    Then move the cursors of the whole batch (`advances`, one statement).
    """
    grants = [Grant(r.thread_id, r.agent.pk, result.read_seq) for result, r in ending]
    for (result, _r), sync in zip(ending, issue_reply_tokens(grants, void_older=True, now=now)):
        result.sync = sync
    # The agent's own heartbeats resume from here.
    agent_services.refresh_heartbeats(agent_ids={r.agent.pk for _result, r in ending}, now=now)
    # Last, after the token rows: the same lock order as a post (token, then participant).
    advance_cursors(advances, now=now)
