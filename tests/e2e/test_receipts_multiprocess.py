"""Receipts and participants agree across two server processes (PostgreSQL + Redis)."""

import asyncio

import pytest

from tests.support.servers import daphne_on_test_database, require_postgres_and_redis
from tests.support.wire import WireClient, post_args

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


async def agent(url: str, model: str) -> tuple[WireClient, str]:
    client = await WireClient.over_websocket(url)
    registered = await client.call("agent_register", {"ide": "CLI", "model": model})
    return client, registered["agent_id"]


async def receipt(client: WireClient, msg_id: str) -> dict:
    [only] = (await client.call("msg_receipts", {"msg_id": msg_id}))["receipts"]
    return only


async def test_delivered_seen_answered_across_two_processes():
    require_postgres_and_redis()
    with daphne_on_test_database() as first, daphne_on_test_database() as second:
        alice, _ = await agent(first.url, "Alice")
        bob, bob_id = await agent(second.url, "Bob")
        try:
            created = await alice.call("thread_create", {"topic": "receipts across processes"})
            thread_id = created["thread"]["thread_id"]
            waiting = await bob.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000})
            await asyncio.sleep(0.5)
            posted = await alice.call(
                "msg_post", post_args(thread_id, "Bob?", 0, created["reply_token"], metadata={"mentions": [bob_id]})
            )
            msg_id = posted["message"]["msg_id"]
            woken = (await bob.reply(waiting, timeout=15))["result"]
            assert [m["msg_id"] for m in woken["messages"]] == [msg_id]
            assert (await receipt(alice, msg_id))["delivered_at"] is not None

            again = await bob.send("msg_wait", {"thread_id": thread_id, "after_seq": 1, "timeout_ms": 20000})
            for _ in range(100):
                if (await receipt(alice, msg_id))["seen_at"] is not None:
                    break
                await asyncio.sleep(0.01)
            assert (await receipt(alice, msg_id))["seen_at"] is not None

            answer = await bob.call("msg_post", post_args(thread_id, "Yes.", 1, woken["reply_token"]))
            latest = (await bob.reply(again, timeout=15))["result"]  # its token supersedes the post's
            answered = await receipt(alice, msg_id)
            assert answered["answer_msg_id"] == answer["message"]["msg_id"]

            [bob_row] = [
                p
                for p in (await alice.call("thread_participants", {"thread_id": thread_id}))["participants"]
                if p["agent"]["agent_id"] == bob_id
            ]
            assert (bob_row["delivered_seq"], bob_row["seen_seq"], bob_row["last_post_seq"]) == (2, 1, 2)

            # Waiting, as the other process sees it (the cache in Redis).
            third = await bob.send("msg_wait", {"thread_id": thread_id, "after_seq": 2, "timeout_ms": 20000})
            for _ in range(100):
                rows = (await alice.call("thread_participants", {"thread_id": thread_id}))["participants"]
                if any(p["waiting"] for p in rows if p["agent"]["agent_id"] == bob_id):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the other process never saw Bob waiting")
            await bob.call("msg_post", post_args(thread_id, "done", latest["current_seq"], latest["reply_token"]))
            await bob.reply(third, timeout=15)
        finally:
            await alice.close()
            await bob.close()
        assert not first.bugs() and not second.bugs()
