"""End to end: a real daphne process, real WebSocket clients."""

import asyncio

import pytest
import websockets

from tests.support.servers import daphne_on_test_database
from tests.support.wire import WireClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    with daphne_on_test_database() as server:
        yield server.url


async def test_agents_register_create_post_and_wake_each_other(server):
    alice = await WireClient.over_websocket(server)
    bob = await WireClient.over_websocket(server)
    try:
        a = await alice.call("agent_register", {"ide": "VS Code", "model": "GPT"})
        await bob.call("agent_register", {"ide": "Cursor", "model": "Claude"})
        created = await alice.call("thread_create", {"topic": "e2e"})
        thread_id = created["thread"]["thread_id"]

        wait = await bob.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 20000})
        await asyncio.sleep(0.3)  # let the wait subscribe; a post before that is returned at once anyway
        posted = await alice.call(
            "msg_post",
            {
                "thread_id": thread_id,
                "content": "hello bob",
                "expected_last_seq": 0,
                "reply_token": created["reply_token"],
                "client_msg_id": "m1",
            },
        )
        woken = await bob.reply(wait, timeout=15)
        assert woken["ok"], woken
        assert [m["content"] for m in woken["result"]["messages"]] == ["hello bob"]
        assert woken["result"]["messages"][0]["author_id"] == a["agent_id"]
        assert woken["result"]["current_seq"] == posted["message"]["seq"] == 1

        # Bob answers with the token his wait gave him; Alice's chain token is then stale.
        await bob.call(
            "msg_post",
            {
                "thread_id": thread_id,
                "content": "hi alice",
                "expected_last_seq": 1,
                "reply_token": woken["result"]["reply_token"],
            },
        )
        stale = await alice.reply(
            await alice.send(
                "msg_post",
                {
                    "thread_id": thread_id,
                    "content": "again",
                    "expected_last_seq": 1,
                    "reply_token": posted["reply_token"],
                },
            )
        )
        assert stale["error"]["code"] == "SeqMismatch"
        assert [m["content"] for m in stale["error"]["new_messages"]] == ["hi alice"]
    finally:
        await alice.close()
        await bob.close()


async def test_server_refuses_foreign_browser_origin_and_accepts_agents_without_origin(server):
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await websockets.connect(server, origin="http://evil.example", open_timeout=10)
    agent = await WireClient.over_websocket(server)  # no Origin header, like a CLI agent
    try:
        config = await agent.call("bus_get_config")
        assert config["heartbeat_interval"] < config["heartbeat_timeout"]
    finally:
        await agent.close()
