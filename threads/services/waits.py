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
from threads.services.reply_tokens import SyncContext, issue_reply_token, issue_reply_tokens


@transaction.atomic
def finish_wait(*, agent: Agent, thread_id: str, read_seq: int) -> SyncContext:
    """End a msg_wait: issue a fresh token and void the agent's older ones."""
    thread = selectors.get_thread(thread_id=thread_id)
    sync = issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=read_seq)
    advance_cursors([Advance(thread_id=thread.pk, agent_id=agent.pk, void_before=sync.serial)])
    return sync


@dataclass
class Bookkeeping:
    """What ending waits leave to write: cursors and token voiding (`advances`), heartbeats of the woken agents.

    The cursors and the voiding are written before the waits' replies are
    sent; the waiting room writes those of every wait a wake-up ends at once
    (`write_cursors`), and the heartbeats after the replies
    (`agents.services.refresh_heartbeats`): nothing reads them back at once.
    """

    advances: list[Advance] = field(default_factory=list)
    woken: set = field(default_factory=set)

    def extend(self, other: "Bookkeeping") -> None:
        self.advances.extend(other.advances)
        self.woken |= other.woken


def write_cursors(advances: list[Advance], *, now: datetime | None = None) -> None:
    """Move the cursors (and voiding serials) of ending waits: one statement, whatever their number."""
    advance_cursors(advances, now=now)


@transaction.atomic
def write_bookkeeping(bookkeeping: Bookkeeping, *, now: datetime | None = None) -> None:
    """Move the cursors (and voiding serials) in one statement; store the woken agents' heartbeats in one more.

    The heartbeat at a wait's end gives a woken agent a whole timeout to
    answer, and the next wait of the agent then has a fresh one to start from.
    """
    now = now or timezone.now()
    agent_services.refresh_heartbeats(agent_ids=bookkeeping.woken, now=now)
    advance_cursors(bookkeeping.advances, now=now)


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
    requests: list[WaitRequest], *, now: datetime | None = None, heartbeats: bool = True
) -> list[WaitResult | ProtocolError]:
    """Serve many msg_wait looks at once: what each would return, and tokens for those that end.

    A post wakes every waiter of a thread at the same moment; serving them as
    one batch costs one read per distinct (thread, after_seq, filter, limit).
    The tokens are signed, not stored. The cursors of every agent in the batch
    (what it was handed, the `after_seq` it showed it read, the voiding of its
    older tokens) and the heartbeats of the woken agents are written in one
    transaction (`write_bookkeeping`) before anything is returned; without
    `heartbeats`, only the cursors: the caller stores the heartbeats of the
    waits that ended (those with a `sync`) itself, after their replies.
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
    bookkeeping = Bookkeeping()
    for r in requests:
        read = reads[(r.thread_id, r.after_seq, r.for_agent, r.limit)]
        if isinstance(read, ProtocolError):  # refused: no token issued, none voided
            results.append(read)
            continue
        result = WaitResult(
            messages=read.messages, has_more=read.has_more, read_seq=read.read_seq, sync=None, payload=read.payload
        )
        results.append(result)
        if read.messages or r.finish:
            ending.append((result, r))
        else:
            bookkeeping.advances.append(
                delivery(
                    thread_id=r.thread_id, agent_id=r.agent.pk, messages=[], seen_seq=min(r.after_seq, read.read_seq)
                )
            )
    grants = [(r.thread_id, r.agent.pk, result.read_seq) for result, r in ending]
    for (result, r), sync in zip(ending, issue_reply_tokens(grants, now=now)):
        result.sync = sync
        bookkeeping.extend(ended_wait(r, result))
    if not heartbeats:
        bookkeeping.woken = set()
    if bookkeeping.advances or bookkeeping.woken:
        write_bookkeeping(bookkeeping, now=now)
    return results


def ended_wait(request: WaitRequest, result: WaitResult) -> Bookkeeping:
    """What a wait that ended with `result` leaves to write: its cursors, its token voiding, its heartbeat."""
    advance = delivery(
        thread_id=request.thread_id,
        agent_id=request.agent.pk,
        messages=result.messages,
        # What the agent showed it read, never past what the thread holds.
        seen_seq=min(request.after_seq, result.read_seq),
        void_before=result.sync.serial,
    )
    return Bookkeeping(advances=[advance], woken={request.agent.pk})
