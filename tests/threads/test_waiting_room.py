"""The process's waiting room: many waits, few threads, no reads while asleep."""

import asyncio
import threading

import pytest
from django.db.backends.utils import CursorWrapper

from tests.conftest import registered
from threads.waiters import get_hub

pytestmark = pytest.mark.django_db(transaction=True)


async def test_two_hundred_waits_need_no_extra_threads_and_read_nothing_while_asleep(connect, monkeypatch):
    poster, _ = await registered(connect, model="Poster")
    created = await poster.call("thread_create", {"topic": "crowd"})
    thread_id = created["thread"]["thread_id"]
    waiter, _ = await registered(connect, model="Crowd")
    await waiter.call("bus_get_config")  # the database thread exists from here on
    threads_before = threading.active_count()

    requests = [
        await waiter.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000})
        for _ in range(200)
    ]
    hub = get_hub()
    for _ in range(200):  # until all 200 have read the database once and gone to sleep
        if sum(map(len, hub.waiters.values())) == 200 and not hub._serving and not hub._batch:
            break
        await asyncio.sleep(0.05)
    assert sum(map(len, hub.waiters.values())) == 200
    assert threading.active_count() <= threads_before + 1

    # No statement reaches the database, from any thread, while they sleep
    # (the housekeeping tick is 20 s away).
    statements = []
    original = CursorWrapper.execute
    monkeypatch.setattr(
        CursorWrapper, "execute", lambda self, sql, params=None: statements.append(sql) or original(self, sql, params)
    )
    await asyncio.sleep(1)
    monkeypatch.undo()
    assert statements == []

    await poster.call(
        "msg_post",
        {"thread_id": thread_id, "content": "everyone up", "expected_last_seq": 0,
         "reply_token": created["reply_token"]},
    )
    for request_id in requests:
        reply = await waiter.reply(request_id, timeout=20)
        assert [m["content"] for m in reply["result"]["messages"]] == ["everyone up"]
