"""
The waiting room of one server process.

Every `msg_wait` in a process registers a `Waiter` here. The process, not each
socket, subscribes to the channel-layer group of every thread that has
waiters, so a post costs one channel-layer message per process however many
agents wait, and each Redis group stays as small as the number of processes.
An incoming `thread.message` event sets the asyncio.Event of each matching
waiter; nothing reads the database while waiting.

A housekeeping tick runs once per heartbeat interval while anyone waits:
- one UPDATE refreshes the heartbeat of every agent waiting here;
- one SELECT of `last_seq` for the threads waited on wakes any waiter whose
  wake-up the channel layer lost (it is at-most-once), and the process
  re-subscribes its groups (Redis may have restarted or expired them).
So an idle process costs the database two statements per heartbeat interval,
whatever the number of waiting agents. A wait that starts long before the next
tick stores its agent's heartbeat once at the start (`cover_heartbeat`), so a
waiting agent's stored heartbeat never lags by more than one interval.

The hub starts its tasks with the first waiter and stops them with the last.
"""

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field, replace
from uuid import UUID

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from agents import events as agent_events
from agents import services as agent_services
from threads import selectors, services
from threads.events import thread_group

logger = logging.getLogger("agentchat.waiters")


@dataclass(eq=False)
class Waiter:
    thread_id: str
    agent_id: UUID
    for_agent: str | None
    # The newest seq this waiter has looked at; only newer messages wake it.
    seen_seq: int
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, seq: int, targets: list[str] | None) -> None:
        """Wake on a new message that may be for us (`targets` None: unknown)."""
        if seq <= self.seen_seq:
            return
        if self.for_agent is not None and targets is not None and self.for_agent not in targets:
            # Not for us. seen_seq stays: events may arrive out of order across
            # processes, and an earlier message for us must still wake us.
            return
        self.event.set()

    async def sleep(self, timeout: float) -> bool:
        """Sleep until offered a message or the timeout passes; True when woken."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        self.event.clear()
        return True


class WaitHub:
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

    # --- waiters -----------------------------------------------------------

    async def open(self, *, thread_id: str, agent_id: UUID, after_seq: int, for_agent: str | None) -> Waiter:
        """Register a waiter; subscribe to the thread first if it is the thread's first."""
        waiter = Waiter(thread_id=thread_id, agent_id=agent_id, for_agent=for_agent, seen_seq=after_seq)
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
                self.next_tick = time.monotonic() + settings.AGENTCHAT["HEARTBEAT_INTERVAL"]
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
                    results = await database_sync_to_async(services.serve_waits)([r for r, _ in batch])
                except Exception as error:  # a bug or a database outage: every request of the batch fails
                    results = [error] * len(batch)
                for (_request, future), result in zip(batch, results):
                    if not future.done():  # done: its wait was cancelled meanwhile
                        future.set_result(result)
        finally:
            self._serving = False

    def waiting_agent_ids(self) -> set[UUID]:
        return {w.agent_id for members in self.waiters.values() for w in members}

    def wake(self, thread_id: str, seq: int, targets: list[str] | None) -> None:
        for waiter in self.waiters.get(thread_id, ()):
            waiter.offer(seq, targets)

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
        backoff = 0.1
        while True:
            try:
                event = await self.layer.receive(self.channel_name)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Channel layer receive failed; retrying in %.1fs", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if event.get("type") == "thread.message":
                self.wake(str(event.get("thread_id")), int(event.get("seq", 0)), event.get("targets"))

    # --- housekeeping ----------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.next_tick - time.monotonic()))
            self.next_tick = time.monotonic() + settings.AGENTCHAT["HEARTBEAT_INTERVAL"]
            try:
                await self._refresh_heartbeats()
                await agent_events.arefresh_waiting(
                    [(w.agent_id, w.thread_id) for ws in self.waiters.values() for w in ws]
                )
                await self._recheck()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Waiters housekeeping failed", exc_info=True)

    async def cover_heartbeat(self, agent_id: UUID) -> None:
        """Store the agent's heartbeat now if it would otherwise lag by more than an interval before the next tick."""
        interval = settings.AGENTCHAT["HEARTBEAT_INTERVAL"]
        until_tick = max(0.0, self.next_tick - time.monotonic())
        if agent_services.seconds_since_write(agent_id) + until_tick > interval:
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
    hub = get_hub()
    request = services.WaitRequest(
        agent=agent, thread_id=thread_id, after_seq=after_seq, limit=limit, for_agent=for_agent, finish=False
    )
    waiter = await hub.open(thread_id=thread_id, agent_id=agent.pk, after_seq=after_seq, for_agent=for_agent)
    announced = False  # "waiting now" is announced only by a wait that goes to sleep
    try:
        await hub.cover_heartbeat(agent.pk)
        deadline = time.monotonic() + timeout
        result = await hub.serve(request)
        while result.sync is None:
            waiter.seen_seq = max(waiter.seen_seq, result.read_seq)
            remaining = deadline - time.monotonic()
            if not announced and remaining > 0:
                announced = True
                await agent_events.aannounce_waiting(agent_id=agent.pk, thread_id=thread_id, waiting=True)
            if remaining <= 0 or not await waiter.sleep(remaining):
                break
            result = await hub.serve(request)
    finally:
        await hub.close(waiter)
        if announced:
            await agent_events.aannounce_waiting(agent_id=agent.pk, thread_id=thread_id, waiting=False)
    if result.sync is None:  # timed out: end with whatever is there (usually nothing) and a fresh token
        result = await hub.serve(replace(request, finish=True))
    return result


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WaitHub]" = weakref.WeakKeyDictionary()


def get_hub() -> WaitHub:
    """The hub of the running event loop (one per server process in production)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = WaitHub()
    return hub
