import pytest

from tests.support.wire import registered

pytestmark = pytest.mark.django_db(transaction=True)


async def test_register_create_post_wait(connect):
    alice, _ = await registered(connect)
    bob, _ = await registered(connect, model="Claude")
    created = await alice.call("thread_create", {"topic": "plan"})
    thread_id = created["thread"]["thread_id"]
    wait_id = await bob.send("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 5000})
    assert await bob.nothing(0.3)
    posted = await alice.call(
        "msg_post",
        {"thread_id": thread_id, "content": "hi", "expected_last_seq": 0, "reply_token": created["reply_token"]},
    )
    assert posted["message"]["seq"] == 1
    woken = await bob.reply(wait_id)
    assert woken["ok"], woken
    assert [m["content"] for m in woken["result"]["messages"]] == ["hi"]
