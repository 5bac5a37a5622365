"""Delivery you can prove: cursors, thread_participants, msg_receipts and overdue replies, over the wire."""

import asyncio
import json
import time
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from tests.support.wire import UNKNOWN_ID, post_args, registered

pytestmark = pytest.mark.django_db(transaction=True)


async def two_agents(connect, topic="receipts"):
    alice, a = await registered(connect, model="Alice")
    bob, b = await registered(connect, model="Bob")
    created = await alice.call("thread_create", {"topic": topic})
    thread_id = created["thread"]["thread_id"]
    await bob.call("bus_connect", {"thread_id": thread_id})
    return alice, a["agent_id"], bob, b["agent_id"], thread_id, created


async def receipt(client, msg_id):
    [only] = (await client.call("msg_receipts", {"msg_id": msg_id}))["receipts"]
    return only


async def until(check, timeout=1.0):
    """Poll `check` (async, truthy when done) for at most `timeout` seconds; the seconds it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, "not within the time the cursors may lag"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_mention_is_delivered_then_seen_then_answered(connect):
    alice, _alice_id, bob, bob_id, thread_id, created = await two_agents(connect)
    posted = await alice.call(
        "msg_post",
        post_args(thread_id, "Bob, review this?", 0, created["reply_token"], metadata={"mentions": [bob_id]}),
    )
    msg_id = posted["message"]["msg_id"]

    before = await alice.call("msg_receipts", {"msg_id": msg_id})
    assert before["message"]["msg_id"] == msg_id
    assert before["receipts"] == [
        {"agent_id": bob_id, "delivered_at": None, "seen_at": None, "answered_at": None, "answer_msg_id": None}
    ]

    woken = await bob.call("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 5000})
    assert [m["msg_id"] for m in woken["messages"]] == [msg_id]
    delivered = await receipt(alice, msg_id)  # written in the wake-up batch, before the reply was sent
    assert delivered["delivered_at"] is not None and delivered["seen_at"] is None

    # Waiting again past the message shows that Bob read it, as soon as the wait starts.
    waiting = await bob.send("msg_wait", {"thread_id": thread_id, "after_seq": 1, "timeout_ms": 5000})
    delay = await until(lambda: seen(alice, msg_id))
    print(f"\nread -> receipt shows it: {delay * 1000:.0f} ms")

    answer = await bob.call("msg_post", post_args(thread_id, "Looks good.", 1, woken["reply_token"]))
    await bob.reply(waiting)  # woken by its own post
    answered = await receipt(alice, msg_id)
    assert answered["answer_msg_id"] == answer["message"]["msg_id"]
    assert answered["answered_at"] == answer["message"]["created_at"]
    assert answered["delivered_at"] <= answered["seen_at"] <= answered["answered_at"]

    participants = {
        p["agent"]["agent_id"]: p
        for p in (await bob.call("thread_participants", {"thread_id": thread_id}))["participants"]
    }
    assert participants[bob_id] | {"agent": None} == participants[bob_id] | {
        "agent": None,
        "is_administrator": False,
        "delivered_seq": 2,
        "seen_seq": 1,
        "last_post_seq": 2,
        "waiting": False,
        "online": True,
    }
    alice_row = next(p for a, p in participants.items() if a != bob_id)
    assert alice_row["is_administrator"] is True and alice_row["last_post_seq"] == 1


async def seen(client, msg_id):
    return (await receipt(client, msg_id))["seen_at"] is not None


async def test_cursors_only_move_forward_and_msg_list_and_msg_get_count(connect):
    alice, _, bob, bob_id, thread_id, created = await two_agents(connect)
    sync = created
    for n in range(3):
        sync = await alice.call("msg_post", post_args(thread_id, f"note {n}", n, sync["reply_token"]))
    await bob.call("msg_list", {"thread_id": thread_id, "after_seq": 2})
    await bob.call("msg_list", {"thread_id": thread_id, "after_seq": 0, "limit": 1})  # older: nothing moves back
    rows = (await alice.call("thread_participants", {"thread_id": thread_id}))["participants"]
    [bob_row] = [p for p in rows if p["agent"]["agent_id"] == bob_id]
    assert (bob_row["delivered_seq"], bob_row["seen_seq"], bob_row["last_post_seq"]) == (3, 2, None)


async def test_a_seq_mismatch_delivers_what_it_carries(connect):
    alice, _, bob, bob_id, thread_id, created = await two_agents(connect)
    joined = await bob.call("bus_connect", {"thread_id": thread_id})
    await alice.call(
        "msg_post", post_args(thread_id, "first", 0, created["reply_token"], metadata={"mentions": [bob_id]})
    )
    error = await bob.error("msg_post", post_args(thread_id, "late", 0, joined["reply_token"]))
    assert error["code"] == "SeqMismatch"
    [missed] = error["new_messages"]
    assert (await receipt(alice, missed["msg_id"]))["delivered_at"] is not None


async def test_a_message_addressed_to_nobody_has_a_receipt_per_other_participant(connect):
    alice, _, bob, bob_id, thread_id, created = await two_agents(connect)
    posted = await alice.call("msg_post", post_args(thread_id, "all hands", 0, created["reply_token"]))
    result = await alice.call("msg_receipts", {"msg_id": posted["message"]["msg_id"]})
    assert [r["agent_id"] for r in result["receipts"]] == [bob_id]
    await bob.call("msg_get", {"msg_id": posted["message"]["msg_id"]})
    assert (await receipt(alice, posted["message"]["msg_id"]))["delivered_at"] is not None


async def test_unknown_message_and_thread_are_not_found(connect):
    client, _ = await registered(connect)
    assert (await client.error("msg_receipts", {"msg_id": UNKNOWN_ID}))["code"] == "NotFound"
    assert (await client.error("thread_participants", {"thread_id": UNKNOWN_ID}))["code"] == "NotFound"
    assert (await client.error("msg_receipts", {}))["code"] == "BadRequest"


async def test_needs_human_must_be_a_boolean(connect):
    alice, _ = await registered(connect)
    created = await alice.call("thread_create", {"topic": "typed"})
    thread_id = created["thread"]["thread_id"]
    args = post_args(thread_id, "help?", 0, created["reply_token"], metadata={"needs_human": "yes"})
    error = await alice.error("msg_post", args)
    assert error["code"] == "BadRequest" and "needs_human" in error["message"]


def report(*args) -> str:
    out = StringIO()
    call_command("report_overdue_replies", *args, stdout=out)
    return out.getvalue()


async def test_a_mention_never_answered_becomes_overdue_until_answered(connect, agentchat_settings):
    agentchat_settings(REPLY_EXPECTED_SECONDS=1)
    alice, alice_id, bob, bob_id, thread_id, created = await two_agents(connect, topic="overdue")
    posted = await alice.call(
        "msg_post", post_args(thread_id, "Bob?", 0, created["reply_token"], metadata={"mentions": [bob_id]})
    )
    woken = await bob.call("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 5000})
    assert (await alice.call("thread_get", {"thread_id": thread_id}))["overdue_replies"] == 0
    await asyncio.sleep(1.1)
    assert (await alice.call("thread_get", {"thread_id": thread_id}))["overdue_replies"] == 1

    lines = (await database_sync_to_async(report)()).splitlines()
    assert len(lines) == 1 and "owes" in lines[0] and "#1" in lines[0] and "overdue" in lines[0]
    [entry] = [json.loads(line) for line in (await database_sync_to_async(report)("--json")).splitlines()]
    assert entry["msg_id"] == posted["message"]["msg_id"]
    assert (entry["owed_by_agent_id"], entry["from_agent_id"]) == (bob_id, alice_id)
    assert entry["overdue_seconds"] >= 1

    await bob.call("msg_post", post_args(thread_id, "Here.", 1, woken["reply_token"]))
    assert (await alice.call("thread_get", {"thread_id": thread_id}))["overdue_replies"] == 0
    assert await database_sync_to_async(report)() == ""


async def test_overdue_replies_are_off_at_zero(connect, agentchat_settings):
    agentchat_settings(REPLY_EXPECTED_SECONDS=0)
    alice, _, bob, bob_id, thread_id, created = await two_agents(connect, topic="off")
    await alice.call(
        "msg_post", post_args(thread_id, "Bob?", 0, created["reply_token"], metadata={"mentions": [bob_id]})
    )
    await bob.call("msg_wait", {"thread_id": thread_id, "after_seq": 0, "timeout_ms": 5000})
    assert (await alice.call("thread_get", {"thread_id": thread_id}))["overdue_replies"] == 0
    assert await database_sync_to_async(report)("--seconds", "0") == ""
    await asyncio.sleep(1.1)
    assert await database_sync_to_async(report)() == ""
    assert len((await database_sync_to_async(report)("--seconds", "1")).splitlines()) == 1  # the option wins
