"""The process's waiting room: many waits, few threads, no reads while asleep."""

import asyncio
import threading
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent
from tests.support.wire import registered
from threads.waiting_room import Waiter, WaitingRoom, get_waiting_room

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
    assert not waiter.event.is_set()
    waiter.offer(5, ["me"])  # seq 5, for us, arrives late (another process's event)
    assert waiter.event.is_set()
