"""
The waiting room of one server process: how msg_wait sleeps and wakes.

This is the one description of the wait design; the README and
docs/decisions.md link here.

- **One subscription per process, not per socket.** Every `msg_wait` in a
  process registers a `Waiter` here. The process joins the channel-layer group
  of a thread (`thread.<uuid>`, threads/events.py) when its first local agent
  starts waiting on it and leaves when the last one stops. A post sends one
  event per group after it commits, so a Redis group has one member per
  process however many agents wait, and the process wakes its local waiters
  in memory (a future and a timer each). The agent consumer has no channel of
  its own.
- **Subscribe, then read, then sleep.** A wait joins the group before it reads
  the database, so a post that commits between the read and the sleep still
  wakes it. Waiters compare the event's `seq` with the newest seq they have
  seen, so old or duplicate events cost nothing; nothing reads the database
  while they sleep.
- **Most wake-ups read nothing.** A post's event carries its message
  (threads/events.py); a waiter that has read everything before it returns it
  at once with a signed reply token (threads/services/reply_tokens.py), no
  database involved (`Waiter.offer`, `WaitingRoom.end_from_event`). Other
  waiters (a gap in what they saw, a message too large to carry) look at the
  database in one batch (`threads.services.serve_waits`): one read per
  distinct `(thread, after_seq, for_agent, limit)`. Requests that arrive while
  a batch is in the database form the next batch.
- **Cursors before the replies, heartbeats after.** The cursors an ended
  wait moves and the voiding of its agent's older tokens are committed
  before its reply is sent, so an op that reads them afterwards, in any
  process, sees them: the waits a wake-up ends from its event in one
  statement, then they are rung (`_end_together`); waits that read the
  database write theirs with the read (`serve`). The woken agents'
  heartbeats are stored after the replies, in one UPDATE
  (`_heartbeats_later`).
- **Housekeeping, once per heartbeat interval while anyone waits:** one UPDATE
  refreshes the heartbeat of every agent waiting here; one SELECT of `last_seq`
  for the threads waited on wakes any waiter whose wake-up the channel layer
  lost (it is at-most-once: a full channel drops messages, Redis may restart),
  and the process re-joins its groups (renewing their expiry in Redis). So an
  idle process costs the database two statements per interval, whatever the
  number of waiting agents. A wait that starts long before the next tick
  stores its agent's heartbeat once at the start (`cover_heartbeat`), so a
  waiting agent's stored heartbeat never lags by more than one interval.
- **The channel-layer prefix.** channels-redis lets one coroutine per process
  read the process's specific channels, from one shared list per prefix; the
  waiting room uses the default `specific.` prefix so it never starves behind
  another reader.

The waiting room starts its tasks with the first waiter and stops them with the last.
"""

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from agentchat import quiet_gc
from agentchat.broadcast import receive_forever
from agentchat.transport import EncodedList, reply_budget
from agents import events as agent_events
from agents import services as agent_services
from agents.events import PRESENCE_GROUP
from threads import selectors, services
from threads.events import thread_group

logger = logging.getLogger("agentchat.waiters")

# Waits that start or stop within this window are published together (and a stop
# followed by a start, as when a woken agent waits again, is not published at all).
PRESENCE_BATCH_SECONDS = 0.2
# Waiters woken per turn of the event loop (see WaitingRoom._ring). Twenty, not fifty: the first replies
# leave sooner and the clients read them while the next batches are served (docs/performance.md).
WAKE_BATCH = 20


@dataclass(frozen=True)
class Handed:
    """A message an event carried, encoded once for every waiter it wakes."""

    payload: EncodedList
    size: int


def _time_out(sleeping: asyncio.Future) -> None:
    if not sleeping.done():
        sleeping.set_result(False)


@dataclass(eq=False)
class Waiter:
    thread_id: str
    agent_id: UUID
    for_agent: str | None
    # The newest seq this waiter has looked at; only newer messages wake it.
    seen_seq: int
    limit: int = 100
    # Set when offered a message; `sleep` returns at once while it is set.
    rung: bool = False
    _sleeping: asyncio.Future | None = None
    # Messages handed over by the wake-up events themselves, in seq order and
    # contiguous from `handed_from`; `stale` when an event could not be added
    # (it carried no message, or broke the run): then the database is read.
    handed: EncodedList | None = None
    handed_from: int = 0
    handed_bytes: int = 0
    stale: bool = False
    # The msg_wait this waiter serves: what the room needs to end it from its events (`WaitingRoom.wake`).
    request: "services.WaitRequest | None" = None
    # Set when the room ended the wait with what its events carried: its WaitResult
    # (or the error that kept it from committing) once committed.
    ending: asyncio.Future | None = None

    def offer(self, seq: int, targets: list[str] | None, message: Handed | None = None) -> bool:
        """Take a new message that may be for us (`targets` None: unknown), keeping it if it came along.

        Returns whether the waiter is asleep and must be woken (`ring`); one
        that is not sleeping now returns at once from its next `sleep`.
        """
        if seq <= self.seen_seq or self.ending is not None:
            return False
        if self.for_agent is not None and targets is not None and self.for_agent not in targets:
            # Not for us. seen_seq stays: events may arrive out of order across
            # processes, and an earlier message for us must still wake us.
            return False
        self._hand(seq, message)
        self.rung = True
        return self._sleeping is not None

    def ring(self) -> None:
        """Wake the waiter from its `sleep` (if it still sleeps)."""
        if self._sleeping is not None and not self._sleeping.done():
            self._sleeping.set_result(True)

    def _hand(self, seq: int, message: Handed | None) -> None:
        if self.stale:
            return
        if self.handed is None and message is not None and seq == self.seen_seq + 1:
            self.handed, self.handed_from, self.handed_bytes = message.payload, seq, message.size
        elif (
            self.handed is not None
            and message is not None
            and seq == self.handed_from + len(self.handed)
            and len(self.handed) < self.limit
            and self.handed_bytes + message.size + 1 <= reply_budget()
        ):
            self.handed = EncodedList([*self.handed, *message.payload])
            self.handed_bytes += message.size + 1
        else:
            self.handed, self.stale = None, True

    @property
    def holds_what_a_read_would_return(self) -> bool:
        return self.handed is not None and self.handed_from == self.seen_seq + 1

    def take_handed(self) -> EncodedList | None:
        """The messages the events handed over, if they are exactly what a read would return now; then forget them."""
        handed, usable = self.handed, self.holds_what_a_read_would_return
        self.handed, self.stale = None, False
        return handed if usable else None

    async def sleep(self, timeout: float) -> bool:
        """Sleep until offered a message or the timeout passes; True when woken.

        One future and one timer: a wake-up of a thousand waiters is a
        thousand callbacks, not the tasks and callbacks of asyncio.wait_for.
        """
        if not self.rung:
            loop = asyncio.get_running_loop()
            self._sleeping = loop.create_future()
            timer = loop.call_later(timeout, _time_out, self._sleeping)
            try:
                await self._sleeping
            finally:
                timer.cancel()
                self._sleeping = None
        woken, self.rung = self.rung, False
        return woken


class WaitingRoom:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel_name: str | None = None
        self.waiters: dict[str, set[Waiter]] = {}
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._batch: list[tuple[services.WaitRequest, asyncio.Future]] = []
        self._serving = False
        self._server: asyncio.Task | None = None
        self.next_tick = 0.0  # monotonic time of the next housekeeping tick
        # (agent, thread) -> how many of the agent's waits sleep on the thread here; and what live views were told.
        self.sleeping: dict[tuple[UUID, str], int] = {}
        self.published: set[tuple[UUID, str]] = set()
        self._publisher: asyncio.Task | None = None
        # The cursors (and token voiding) of waits ending now, and the future of their commit: the next
        # group `record` writes.
        self._group: tuple[list[services.Advance], asyncio.Future] | None = None
        self._writer: asyncio.Task | None = None
        # Heartbeats of agents whose waits ended, stored after the replies (`_heartbeats_later`).
        self._heartbeats: set[UUID] = set()
        self._heartbeat_writer: asyncio.Task | None = None
        self._ringing = 0  # wake-ups still ringing their waiters, a batch per turn of the loop
        self._ending: set[asyncio.Task] = set()  # wake-ups committing before they ring (`_end_together`)
        # Set while no wake-up is committing or ringing: the heartbeats wait for it (`_write_heartbeats`).
        self._replies_out = asyncio.Event()
        self._replies_out.set()

    # --- waiters -----------------------------------------------------------

    async def open(self, request: services.WaitRequest) -> Waiter:
        """Register a waiter for a msg_wait; subscribe to the thread first if it is the thread's first."""
        thread_id = request.thread_id
        waiter = Waiter(
            thread_id=thread_id,
            agent_id=request.agent.pk,
            for_agent=request.for_agent,
            seen_seq=request.after_seq,
            limit=request.limit,
            request=request,
        )
        async with self._lock:
            if self.channel_name is None:
                # The default prefix: channels-redis lets one coroutine at a time
                # read a process's specific channels, and only those sharing the
                # consumers' "specific." prefix; another prefix would never be read.
                self.channel_name = await self.layer.new_channel()
            members = self.waiters.setdefault(thread_id, set())
            if not members:
                await self._subscribe(thread_id)
            members.add(waiter)
            if not self._tasks:
                # Keep the cadence of the ticks when the room empties and fills again
                # (as a wake-up does): a tick still ahead stays where it was.
                now = time.monotonic()
                if self.next_tick <= now:
                    self.next_tick = now + settings.AGENTCHAT["HEARTBEAT_INTERVAL"]
                self._tasks = [
                    asyncio.create_task(self._receive_loop(), name="agentchat-waiters-receive"),
                    asyncio.create_task(self._tick_loop(), name="agentchat-waiters-tick"),
                ]
        return waiter

    async def close(self, waiter: Waiter) -> None:
        """Unregister a waiter; unsubscribe and stop when nothing waits any more."""
        async with self._lock:
            members = self.waiters.get(waiter.thread_id)
            if members is None or waiter not in members:
                return
            members.discard(waiter)
            if not members:
                del self.waiters[waiter.thread_id]
                await self._unsubscribe(waiter.thread_id)
            if not self.waiters:
                tasks, self._tasks = self._tasks, []
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def serve(self, request: services.WaitRequest) -> services.WaitResult:
        """Look at the database for a wait, batched with every other look due now.

        Requests that arrive while a batch is in the database form the next
        batch, so a post that wakes 1,000 waiters costs a few queries, not
        thousands, and the database thread is never queued behind them.
        """
        future = asyncio.get_running_loop().create_future()
        self._batch.append((request, future))
        if not self._serving:
            self._serving = True
            # Keep a reference: the loop holds tasks only weakly.
            self._server = asyncio.create_task(self._serve_batches(), name="agentchat-waiters-serve")
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    async def _serve_batches(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                try:
                    # Reads, and writes the cursors of the ending waits, before anything is returned.
                    results = await database_sync_to_async(services.serve_waits)(
                        [r for r, _ in batch], heartbeats=False
                    )
                except Exception as error:  # a bug or a database outage: every request of the batch fails
                    results = [error] * len(batch)
                for (_request, future), result in zip(batch, results):
                    if not future.done():  # done: its wait was cancelled meanwhile
                        future.set_result(result)
                self._heartbeats_later(
                    {r.agent.pk for (r, _), result in zip(batch, results) if getattr(result, "sync", None)}
                )
        finally:
            self._serving = False

    async def end_from_event(self, request: services.WaitRequest, handed: EncodedList) -> services.WaitResult:
        """End a wait with the messages its wake-up events carried: no database read, a signed token."""
        [result], bookkeeping = self._results_from_events([(request, handed)])
        await self.record(bookkeeping)
        return result

    @staticmethod
    def _results_from_events(
        ends: list[tuple[services.WaitRequest, EncodedList]],
    ) -> tuple[list[services.WaitResult], services.Bookkeeping]:
        """What waits return that end with the messages their events carried, and what they leave to write."""
        grants = [(request.thread_id, request.agent.pk, handed[-1]["seq"]) for request, handed in ends]
        results, bookkeeping = [], services.Bookkeeping()
        for (request, handed), sync in zip(ends, services.issue_reply_tokens(grants)):
            result = services.WaitResult(
                messages=handed, has_more=False, read_seq=sync.current_seq, sync=sync, payload=handed
            )
            results.append(result)
            bookkeeping.extend(services.ended_wait(request, result))
        return results, bookkeeping

    async def record(self, bookkeeping: services.Bookkeeping) -> None:
        """Commit the cursors and token voiding ending waits leave, with every other wait ending now.

        Group commit: the first wait starts the writer, which takes the group
        on the loop's next turn; waits that end while that write is in the
        database form the next group. Raises what the write raised (a
        database outage), so the wait fails instead of answering with cursors
        that were not kept. The heartbeats are stored after the replies.
        """
        self._heartbeats_later(bookkeeping.woken)
        if self._group is None:
            self._group = ([], asyncio.get_running_loop().create_future())
        group, written = self._group
        group.extend(bookkeeping.advances)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups(), name="agentchat-waiters-bookkeeping")
        # Shielded: a wait cancelled meanwhile must not cancel the write of the others.
        error = await asyncio.shield(written)
        if error is not None:
            raise error

    async def _write_groups(self) -> None:
        while self._group is not None:
            (advances, written), self._group = self._group, None
            try:
                await database_sync_to_async(services.write_cursors)(advances)
            except Exception as error:  # handed to every wait of the group (never raised here: nobody awaits us)
                written.set_result(error)
            else:
                written.set_result(None)

    def _heartbeats_later(self, agent_ids: set[UUID]) -> None:
        """Store the heartbeats of agents whose waits ended, once the replies now due are on their way.

        The heartbeat at a wait's end gives a woken agent a whole timeout to
        answer. Nothing reads it back at once, so it waits until the loop
        has rung every waiter of the wake-up; those that pile up meanwhile go
        in one UPDATE.
        """
        if not agent_ids:
            return
        self._heartbeats |= agent_ids
        if self._heartbeat_writer is None or self._heartbeat_writer.done():
            self._heartbeat_writer = asyncio.create_task(self._write_heartbeats(), name="agentchat-waiters-heartbeats")

    async def _write_heartbeats(self) -> None:
        # The replies first: the database thread would take the interpreter from them. Waited for on an
        # event, not by spinning the loop, which would hold the interpreter from the very cursor write
        # the replies wait for.
        await self._replies_out.wait()
        await asyncio.sleep(0)  # the last batch's replies are written on the loop's next turn
        while self._heartbeats:
            agent_ids, self._heartbeats = self._heartbeats, set()
            try:
                await database_sync_to_async(agent_services.refresh_heartbeats)(agent_ids=agent_ids)
            except Exception:
                logger.warning("Could not store the heartbeats of %d woken agents", len(agent_ids), exc_info=True)

    def waiting_agent_ids(self) -> set[UUID]:
        return {w.agent_id for members in self.waiters.values() for w in members}

    def wake(self, thread_id: str, seq: int, targets: list[str] | None, message: dict | None = None) -> None:
        waiters = self.waiters.get(thread_id)
        if not waiters:
            return
        handed = None
        if message is not None and message.get("seq") == seq:
            payload = EncodedList([message])
            handed = Handed(payload=payload, size=len(payload.encoded.encode()) - 2)
        asleep = [waiter for waiter in waiters if waiter.offer(seq, targets, handed)]
        ending = [w for w in asleep if w.request is not None and w.holds_what_a_read_would_return]
        if ending:
            self._end_together(ending)
        self._ring([w for w in asleep if w.ending is None])  # they read the database (`serve`)

    def _end_together(self, ending: list[Waiter]) -> None:
        """End these waits with what their events carried: commit their cursors in one go, then ring them.

        The write comes before any of their replies (an op that reads the
        cursors or uses an older token afterwards, in any process, sees it),
        as one statement for the whole wake-up, made while nothing else
        runs: the event loop then serves the replies without the database
        thread taking the interpreter from it.
        """
        loop = asyncio.get_running_loop()
        results, bookkeeping = self._results_from_events([(w.request, w.take_handed()) for w in ending])
        for waiter in ending:
            waiter.ending = loop.create_future()
        task = loop.create_task(self._commit_then_ring(ending, results, bookkeeping), name="agentchat-waiters-end")
        self._ending.add(task)  # the loop holds tasks only weakly
        self._replies_out.clear()
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        self._ending.discard(task)
        self._note_replies_out()

    def _note_replies_out(self) -> None:
        if not self._ringing and not self._ending:
            self._replies_out.set()

    async def _commit_then_ring(
        self, ending: list[Waiter], results: list[services.WaitResult], bookkeeping: services.Bookkeeping
    ) -> None:
        try:
            await self.record(bookkeeping)
        except Exception as error:  # a database outage: those waits fail (their agents read again, nothing lost)
            results = [error] * len(ending)
        for waiter, result in zip(ending, results):
            if not waiter.ending.done():  # done: its wait was cancelled meanwhile
                waiter.ending.set_result(result)
        self._ring(ending)

    def _ring(self, asleep: list[Waiter]) -> None:
        """Wake WAKE_BATCH waiters now and the rest a batch per turn of the event loop.

        The server writes a reply to its socket when the event loop next polls
        the sockets, after the callbacks already due. So once this batch has
        run (the callback queued behind its wake-ups), the next is rung by a
        timer due at once, which the loop runs after the sockets' callbacks of
        its next turn: each batch's replies leave before the next batch is
        served, instead of all of them after the last.
        """
        for waiter in asleep[:WAKE_BATCH]:
            waiter.ring()
        rest = asleep[WAKE_BATCH:]
        if rest:
            self._ringing += 1
            self._replies_out.clear()
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_later, 0, self._ring_rest, rest)

    def _ring_rest(self, rest: list[Waiter]) -> None:
        self._ringing -= 1
        self._ring(rest)
        self._note_replies_out()

    # --- channel layer -------------------------------------------------------

    async def _subscribe(self, thread_id: str) -> None:
        try:
            await self.layer.group_add(thread_group(thread_id), self.channel_name)
        except Exception:
            # The tick re-subscribes and re-checks; the wait still works, later.
            logger.warning("Could not subscribe to thread %s", thread_id, exc_info=True)

    async def _unsubscribe(self, thread_id: str) -> None:
        try:
            await self.layer.group_discard(thread_group(thread_id), self.channel_name)
        except Exception:
            logger.warning("Could not unsubscribe from thread %s", thread_id, exc_info=True)

    async def _receive_loop(self) -> None:
        await receive_forever(self.layer, self.channel_name, self._heard, what="Waiting room")

    def _heard(self, event: dict[str, Any]) -> None:
        quiet_gc.activity()
        if event.get("type") == "thread.message":
            message = event.get("message")
            self.wake(
                str(event.get("thread_id")),
                int(event.get("seq", 0)),
                event.get("targets"),
                message if isinstance(message, dict) else None,
            )

    # --- housekeeping ----------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.next_tick - time.monotonic()))
            self.next_tick = time.monotonic() + settings.AGENTCHAT["HEARTBEAT_INTERVAL"]
            try:
                await self._refresh_heartbeats()
                await database_sync_to_async(agent_events.refresh_waiting)(list(self.published))
                await self._recheck()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Waiters housekeeping failed", exc_info=True)

    # --- "waiting now" for live views ---------------------------------------------

    def started_waiting(self, agent_id: UUID, thread_id: str) -> None:
        """A wait went to sleep: publish it with the next batch of presence changes."""
        key = (agent_id, thread_id)
        self.sleeping[key] = self.sleeping.get(key, 0) + 1
        self._publish_soon()

    def stopped_waiting(self, agent_id: UUID, thread_id: str) -> None:
        key = (agent_id, thread_id)
        left = self.sleeping.get(key, 0) - 1
        if left > 0:
            self.sleeping[key] = left
        else:
            self.sleeping.pop(key, None)
        self._publish_soon()

    def _publish_soon(self) -> None:
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish(), name="agentchat-presence")

    async def _publish(self) -> None:
        """Publish what changed since the last batch: one cache write and one channel-layer event.

        A wake-up ends every wait of a thread at once, and most agents wait
        again at once: batching (PRESENCE_BATCH_SECONDS) turns those thousands
        of stops and starts into one event, or none.
        """
        await asyncio.sleep(PRESENCE_BATCH_SECONDS)
        now = set(self.sleeping)
        started, stopped = now - self.published, self.published - now
        self.published = now
        if not started and not stopped:
            return
        try:
            await database_sync_to_async(agent_events.record_waiting_changes)(started=started, stopped=stopped)
            await self.layer.group_send(PRESENCE_GROUP, agent_events.waiting_event(started=started, stopped=stopped))
        except Exception:
            logger.warning("Could not publish waiting presence", exc_info=True)

    async def cover_heartbeat(self, agent_id: UUID) -> None:
        """Store the agent's heartbeat now if it would otherwise lag by more than an interval before the next tick."""
        until_tick = max(0.0, self.next_tick - time.monotonic())
        if agent_services.heartbeat_would_lag(agent_id, seconds_to_next_write=until_tick):
            await database_sync_to_async(agent_services.refresh_heartbeats)(agent_ids=[agent_id])

    async def _refresh_heartbeats(self) -> None:
        agent_ids = self.waiting_agent_ids()
        if agent_ids:
            await database_sync_to_async(agent_services.refresh_heartbeats)(agent_ids=agent_ids)

    async def _recheck(self) -> None:
        thread_ids = list(self.waiters)
        if not thread_ids:
            return
        for thread_id in thread_ids:
            await self._subscribe(thread_id)
        for thread_id, last_seq in (await database_sync_to_async(selectors.last_seqs)(thread_ids=thread_ids)).items():
            self.wake(thread_id, last_seq, None)


async def wait_for_messages(
    *, agent, thread_id: str, after_seq: int, timeout: float, for_agent: str | None, limit: int
) -> services.WaitResult:
    """msg_wait: return at once when there is something to read, else sleep until woken or timed out.

    Subscribe first, then read: a post committed after the read still wakes us.
    """
    room = get_waiting_room()
    request = services.WaitRequest(
        agent=agent, thread_id=thread_id, after_seq=after_seq, limit=limit, for_agent=for_agent, finish=False
    )
    waiter = await room.open(request)
    announced = False  # "waiting now" is announced only by a wait that goes to sleep
    try:
        await room.cover_heartbeat(agent.pk)
        deadline = time.monotonic() + timeout
        result = await room.serve(request)
        while result.sync is None:
            waiter.seen_seq = max(waiter.seen_seq, result.read_seq)
            remaining = deadline - time.monotonic()
            if not announced and remaining > 0:
                announced = True
                room.started_waiting(agent.pk, thread_id)
            woken = remaining > 0 and await waiter.sleep(remaining)
            if waiter.ending is not None:  # the room ended the wait with what its events carried
                result = await waiter.ending
                if isinstance(result, Exception):
                    raise result
                break
            if not woken:
                break
            handed = waiter.take_handed()
            if handed is not None:
                result = await room.end_from_event(request, handed)
            else:
                result = await room.serve(request)
    finally:
        await room.close(waiter)
        if announced:
            room.stopped_waiting(agent.pk, thread_id)
    if result.sync is None:  # timed out: end with whatever is there (usually nothing) and a fresh token
        result = await room.serve(replace(request, finish=True))
    return result


_rooms: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WaitingRoom]" = weakref.WeakKeyDictionary()


def get_waiting_room() -> WaitingRoom:
    """The waiting room of the running event loop (one per server process in production)."""
    loop = asyncio.get_running_loop()
    room = _rooms.get(loop)
    if room is None:
        room = _rooms[loop] = WaitingRoom()
    return room
