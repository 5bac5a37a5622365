"""The process's waiting room: many waits, few threads, no reads while asleep."""

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from agentchat.transport import EncodedList
from agents import services as agent_services
from agents.models import Agent
from tests.support.wire import registered
from threads import events, services
from threads.models import Participant
from threads.waiting_room import Handed, Waiter, WaitingRoom, get_waiting_room

pytestmark = pytest.mark.django_db(transaction=True)


async def test_two_hundred_waits_need_no_extra_threads_and_read_nothing_while_asleep(connect, monkeypatch):
    poster, _ = await registered(connect, model="Poster")
    created = await poster.call("thread_create", {"topic": "crowd"})
    thread_id = created["thread"]["thread_id"]
    waiter, _ = await registered(connect, model="Crowd")
    await waiter.call("bus_get_config")  # the database thread exists from here on
    threads_before = threading.active_count()

    # Count every statement, from any thread, from here on.
    statements = []
    original = CursorWrapper.execute
    monkeypatch.setattr(
        CursorWrapper, "execute", lambda self, sql, params=None: statements.append(sql) or original(self, sql, params)
    )
    requests = [
        await waiter.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000}) for _ in range(200)
    ]
    room = get_waiting_room()
    counted, quiet_since = -1, 0.0
    loop = asyncio.get_running_loop()
    for _ in range(400):  # until all 200 wait and no statement came for 0.3 s: they read once and went to sleep
        if len(statements) != counted:
            counted, quiet_since = len(statements), loop.time()
        elif sum(map(len, room.waiters.values())) == 200 and loop.time() - quiet_since >= 0.3:
            break
        await asyncio.sleep(0.05)
    assert sum(map(len, room.waiters.values())) == 200
    assert threading.active_count() <= threads_before + 1

    # No statement reaches the database, from any thread, while they sleep
    # (the housekeeping tick is 20 s away).
    statements.clear()
    await asyncio.sleep(1)
    monkeypatch.undo()
    assert statements == []

    await poster.call(
        "msg_post",
        {
            "thread_id": thread_id,
            "content": "everyone up",
            "expected_last_seq": 0,
            "reply_token": created["reply_token"],
        },
    )
    for request_id in requests:
        reply = await waiter.reply(request_id, timeout=20)
        assert [m["content"] for m in reply["result"]["messages"]] == ["everyone up"]


async def test_a_wait_far_from_the_next_tick_stores_its_heartbeat_at_once(agentchat_settings, make_agent):
    """The tick comes once an interval; a wait that would lag longer stores its heartbeat on entry.

    The lag is the time since the last write plus the time to the next tick.
    """
    agentchat_settings(HEARTBEAT_INTERVAL=2, AGENT_HEARTBEAT_TIMEOUT=4)
    agent, _ = await database_sync_to_async(make_agent)()
    room = WaitingRoom()
    old = timezone.now() - timedelta(seconds=30)

    async def stored_heartbeat():
        return (await database_sync_to_async(Agent.objects.get)(pk=agent.pk)).last_heartbeat

    await database_sync_to_async(agent_services.refresh_heartbeats)(agent_ids=[agent.pk])
    await asyncio.sleep(1)  # written 1 s ago
    await database_sync_to_async(Agent.objects.filter(pk=agent.pk).update)(last_heartbeat=old)

    room.next_tick = time.monotonic() + 0.5  # 1 + 0.5 < 2: the tick stores it in time
    await room.cover_heartbeat(agent.pk)
    assert await stored_heartbeat() == old

    room.next_tick = time.monotonic() + 1.5  # 1 + 1.5 > 2: would lag too long
    await room.cover_heartbeat(agent.pk)
    assert await stored_heartbeat() > old + timedelta(seconds=25)
    assert agent_services.heartbeat_writes.seconds_since(agent.pk) < 1


def test_a_filtered_waiter_still_wakes_for_an_earlier_message_that_arrives_late():
    waiter = Waiter(thread_id="t", agent_id=None, for_agent="me", seen_seq=4)
    waiter.offer(6, ["someone-else"])  # seq 6 is not for us and arrives first
    assert not waiter.rung
    waiter.offer(5, ["me"])  # seq 5, for us, arrives late (another process's event)
    assert waiter.rung


# --- wake-ups that carry their message ----------------------------------------------------


def handed(seq: int, content: str = "m") -> Handed:
    payload = EncodedList([{"seq": seq, "content": content}])
    return Handed(payload=payload, size=len(payload.encoded) - 2)


def test_a_waiter_keeps_the_messages_its_events_carry_while_they_run_on_from_what_it_read():
    waiter = Waiter(thread_id="t", agent_id=None, for_agent=None, seen_seq=4)
    waiter.offer(5, [], handed(5, "five"))
    waiter.offer(6, [], handed(6, "six"))
    assert [m["content"] for m in waiter.take_handed()] == ["five", "six"]
    assert waiter.take_handed() is None  # taken once


@pytest.mark.parametrize(
    "offers",
    [
        [(6, True)],  # seq 5 was never carried: a gap
        [(5, True), (7, True)],  # a gap after the first
        [(5, False)],  # the event carried no message (too large)
        [(5, True), (6, False)],
    ],
)
def test_a_waiter_reads_the_database_when_its_events_leave_a_gap_or_carry_no_message(offers):
    waiter = Waiter(thread_id="t", agent_id=None, for_agent=None, seen_seq=4)
    for seq, carried in offers:
        waiter.offer(seq, [], handed(seq) if carried else None)
    assert waiter.rung
    assert waiter.take_handed() is None


def test_a_waiter_takes_no_more_carried_messages_than_its_limit():
    waiter = Waiter(thread_id="t", agent_id=None, for_agent=None, seen_seq=0, limit=2)
    for seq in (1, 2, 3):
        waiter.offer(seq, [], handed(seq))
    assert waiter.take_handed() is None


def test_carried_messages_are_not_used_once_a_read_went_past_them():
    waiter = Waiter(thread_id="t", agent_id=None, for_agent=None, seen_seq=4)
    waiter.offer(5, [], handed(5))
    waiter.seen_seq = 5  # a read returned seq 5 meanwhile
    assert waiter.take_handed() is None


def test_a_filtered_waiter_keeps_only_a_carried_message_for_it():
    waiter = Waiter(thread_id="t", agent_id=None, for_agent="me", seen_seq=4)
    waiter.offer(5, ["me"], handed(5, "for me"))
    assert [m["content"] for m in waiter.take_handed()] == ["for me"]


async def asleep_then_count_reads(count: int, monkeypatch) -> list:
    """Wait until `count` waits sleep in the waiting room; from then on, record every batch of database reads."""
    room = get_waiting_room()
    for _ in range(200):
        if sum(map(len, room.waiters.values())) == count:
            break
        await asyncio.sleep(0.02)
    reads: list = []
    original = services.serve_waits
    monkeypatch.setattr(
        services, "serve_waits", lambda requests, **kw: reads.append(requests) or original(requests, **kw)
    )
    return reads


async def test_a_wake_up_that_carries_its_message_reads_nothing_and_returns_what_a_read_would(connect, monkeypatch):
    poster, _ = await registered(connect, model="Poster")
    created = await poster.call("thread_create", {"topic": "carried"})
    thread_id = created["thread"]["thread_id"]
    waiters = [(await registered(connect, model=f"W{n}"))[0] for n in range(3)]
    held = [await w.call("bus_connect", {"thread_id": thread_id}) for w in waiters]
    requests = [
        await w.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000}) for w in waiters
    ]
    reads = await asleep_then_count_reads(3, monkeypatch)

    await poster.call(
        "msg_post",
        {
            "thread_id": thread_id,
            "content": "carried along",
            "expected_last_seq": 0,
            "reply_token": created["reply_token"],
            "metadata": {"mentions": [str(held[0]["agent"]["agent_id"])]},
        },
    )
    results = [(await w.reply(r, timeout=10))["result"] for w, r in zip(waiters, requests)]
    assert reads == []  # no waiter read the database
    listed = await waiters[0].call("msg_list", {"thread_id": thread_id, "after_seq": 0})
    for result in results:
        assert result["messages"] == listed["messages"]
        assert (result["has_more"], result["current_seq"]) == (False, 1)

    # The tokens work; the older ones were voided before the replies were sent.
    stale = await waiters[1].error(
        "msg_post",
        {"thread_id": thread_id, "content": "old", "expected_last_seq": 1, "reply_token": held[1]["reply_token"]},
    )
    assert stale["code"] == "ReplyTokenInvalid"
    posted = await waiters[1].call(
        "msg_post",
        {"thread_id": thread_id, "content": "new", "expected_last_seq": 1, "reply_token": results[1]["reply_token"]},
    )
    assert posted["message"]["seq"] == 2
    # The mention was delivered and counted as owed, as a read would have.
    row = await database_sync_to_async(Participant.objects.get)(
        thread_id=thread_id, agent_id=held[0]["agent"]["agent_id"]
    )
    assert (row.delivered_seq, row.owed_seq) == (1, 1)


class OneWaiter:
    """A poster's new thread, and an agent asleep in msg_wait on it (with a token it held before)."""

    @classmethod
    async def asleep(cls, connect, monkeypatch) -> "OneWaiter":
        self = cls()
        self.poster, _ = await registered(connect, model="Poster")
        self.created = await self.poster.call("thread_create", {"topic": "one waiter"})
        self.thread_id = self.created["thread"]["thread_id"]
        self.waiter, self.registration = await registered(connect, model="W")
        self.held = await self.waiter.call("bus_connect", {"thread_id": self.thread_id})
        wait = {"thread_id": self.thread_id, "after_seq": 0, "timeout_ms": 20000}
        self.request = await self.waiter.send("msg_wait", wait)
        await asleep_then_count_reads(1, monkeypatch)
        return self

    async def post(self, content: str = "hi") -> None:
        token = self.created["reply_token"]
        post = {"thread_id": self.thread_id, "content": content, "expected_last_seq": 0, "reply_token": token}
        await self.poster.call("msg_post", post)


def hold_cursor_writes(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Hold a wake-up's cursor write in the database thread: (set once it is held, set it to let it go)."""
    holding, gate = threading.Event(), threading.Event()
    write = services.write_cursors

    def held_write(advances):
        holding.set()
        return gate.wait(10) and write(advances)

    monkeypatch.setattr(services, "write_cursors", held_write)
    return holding, gate


async def test_a_woken_wait_replies_only_once_its_cursors_and_voiding_are_committed(connect, monkeypatch):
    one = await OneWaiter.asleep(connect, monkeypatch)
    waiter, thread_id, registration, held, request = one.waiter, one.thread_id, one.registration, one.held, one.request
    _holding, gate = hold_cursor_writes(monkeypatch)

    await one.post()
    assert await waiter.socket.nothing(0.5)  # no reply while its writes are held
    gate.set()
    result = (await waiter.reply(request, timeout=10))["result"]
    assert [m["content"] for m in result["messages"]] == ["hi"]
    # Written before the reply: the cursor, and the voiding of the token held before.
    row = await database_sync_to_async(Participant.objects.get)(thread_id=thread_id, agent_id=registration["agent_id"])
    assert row.delivered_seq == 1 and row.delivered_at is not None
    stale = await waiter.error(
        "msg_post",
        {"thread_id": thread_id, "content": "old", "expected_last_seq": 1, "reply_token": held["reply_token"]},
    )
    assert stale["code"] == "ReplyTokenInvalid"


async def test_a_wake_up_waiting_for_its_cursor_write_leaves_the_process_idle(connect, monkeypatch):
    # Nothing may spin on the event loop meanwhile: a busy loop holds the interpreter, and the
    # database thread doing the write would wait for it.
    one = await OneWaiter.asleep(connect, monkeypatch)
    holding, gate = hold_cursor_writes(monkeypatch)
    await one.post()
    while not holding.is_set():
        await asyncio.sleep(0.01)
    used = time.process_time()
    assert await one.waiter.socket.nothing(0.5)
    busy = time.process_time() - used
    gate.set()
    await one.waiter.reply(one.request, timeout=10)
    assert busy < 0.25, f"the process used {busy:.2f} s of CPU in 0.5 s while the write was held"


async def test_a_woken_agents_heartbeat_is_stored_after_its_reply(connect, monkeypatch):
    one = await OneWaiter.asleep(connect, monkeypatch)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    agent = Agent.objects.filter(pk=one.registration["agent_id"])
    await database_sync_to_async(agent.update)(last_heartbeat=an_hour_ago)

    await one.post()
    await one.waiter.reply(one.request, timeout=10)
    for _ in range(100):  # written once the wake-up's replies are out, not before
        stored = (await database_sync_to_async(agent.get)()).last_heartbeat
        if stored > an_hour_ago:
            break
        await asyncio.sleep(0.02)
    assert timezone.now() - stored < timedelta(seconds=5)


async def test_a_wake_up_whose_message_is_too_large_to_carry_is_read_from_the_database(connect, monkeypatch):
    monkeypatch.setattr(events, "EVENT_MESSAGE_BYTES", 10)
    poster, _ = await registered(connect, model="Poster")
    created = await poster.call("thread_create", {"topic": "large"})
    thread_id = created["thread"]["thread_id"]
    waiter, _ = await registered(connect, model="W")
    request = await waiter.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000})
    reads = await asleep_then_count_reads(1, monkeypatch)

    await poster.call(
        "msg_post",
        {"thread_id": thread_id, "content": "x" * 100, "expected_last_seq": 0, "reply_token": created["reply_token"]},
    )
    result = (await waiter.reply(request, timeout=10))["result"]
    assert [m["content"] for m in result["messages"]] == ["x" * 100]
    assert len(reads) == 1
