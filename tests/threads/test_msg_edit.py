"""msg_edit and msg_edit_history: on the domain layer, then over the wire."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model

from agentchat import errors
from tests.support.domain import STAFF
from tests.support.wire import registered
from tests.threads.toolbox import UNKNOWN_ID, post_as, refused
from threads import events, search, selectors, services
from threads.models import Message, MessageEdit
from threads.serializers import HIDDEN_CONTENT

SECRET = "AKIA" + "ABCDEFGHIJKLMNOP"  # an AWS access key id, as the filter sees it


@pytest.fixture
def author(make_agent):
    return make_agent()[0]


@pytest.fixture
def other(make_agent):
    return make_agent(model="Claude")[0]


@pytest.fixture
def thread(author):
    return services.create_thread(agent=author, topic="plan")[0]


@pytest.fixture
def message(author, thread):
    return post_as(author, thread, "first draft")


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("moderator", password="x", is_staff=True)


def edit(message, content, **editor):
    return services.edit_message(msg_id=str(message.pk), content=content, **editor)


# --- the domain -----------------------------------------------------------------------

domain = pytest.mark.django_db


@domain
def test_edit_replaces_content_and_keeps_the_old_one_in_history(author, message):
    edited = edit(message, "second draft", agent=author)
    assert edited.changed
    fresh = Message.objects.get(pk=message.pk)
    assert (fresh.content, fresh.edit_version, fresh.seq) == ("second draft", 1, message.seq)
    assert fresh.edited_at is not None
    [row] = MessageEdit.objects.filter(message=message)
    assert (row.version, row.old_content, row.editor_agent_id, row.editor_name) == (
        1,
        "first draft",
        author.pk,
        author.name,
    )
    assert row.created_at == fresh.edited_at


@domain
def test_edits_number_their_versions_and_history_is_oldest_first(author, message):
    edit(message, "v1", agent=author)
    edit(message, "v2", agent=author)
    fresh, history = selectors.edit_history(msg_id=str(message.pk))
    assert fresh.edit_version == 2
    assert [(e.version, e.old_content) for e in history] == [(1, "first draft"), (2, "v1")]


@domain
def test_identical_content_is_no_change_and_stores_nothing(author, message):
    before = Message.objects.get(pk=message.pk)
    edited = edit(message, "first draft", agent=author)
    assert not edited.changed
    after = Message.objects.get(pk=message.pk)
    assert (after.edit_version, after.edited_at) == (0, None) == (before.edit_version, before.edited_at)
    assert not MessageEdit.objects.exists()


@domain
def test_another_agent_is_forbidden_and_nothing_is_stored(other, message):
    with refused(errors.Forbidden):
        edit(message, "hijacked", agent=other)


@domain
def test_an_agent_cannot_edit_a_human_post(author, thread):
    human = services.post_human_message(thread=thread, content="from a human", author_name="alice")
    with refused(errors.Forbidden):
        edit(human, "changed", agent=author)


@domain
@pytest.mark.parametrize("msg_id", [UNKNOWN_ID, "not-a-uuid"])
def test_unknown_or_malformed_message_is_not_found(author, message, msg_id):
    with refused(errors.NotFound) as info:
        services.edit_message(msg_id=msg_id, content="x", agent=author)
    assert info.value.extra["resource"] == "message"


@domain
@pytest.mark.parametrize("content", ["", "   \n"])
def test_blank_content_is_bad_request(author, message, content):
    with refused(errors.BadRequest) as info:
        edit(message, content, agent=author)
    assert info.value.extra["field"] == "content"


@domain
def test_content_over_the_limit_is_payload_too_large_and_at_the_limit_is_accepted(agentchat_settings, author, message):
    agentchat_settings(MAX_MESSAGE_CHARS=20)
    with refused(errors.PayloadTooLarge):
        edit(message, "x" * 21, agent=author)
    assert edit(message, "x" * 20, agent=author).changed


@domain
def test_edit_introducing_a_secret_is_content_blocked_and_stores_nothing(author, message):
    with refused(errors.ContentBlocked) as info:
        edit(message, f"the key is {SECRET}", agent=author)
    assert info.value.extra["pattern"] == "aws_access_key_id"
    # The search index still holds the old content, not the refused one.
    assert [h.message.pk for h in search.search_messages(query="draft")[0]] == [message.pk]
    assert search.search_messages(query="key")[0] == []


@domain
def test_the_content_filter_can_be_turned_off_for_edits_as_for_posts(agentchat_settings, author, message):
    agentchat_settings(CONTENT_FILTER_ENABLED=False)
    assert edit(message, f"the key is {SECRET}", agent=author).changed


@domain
def test_an_agent_cannot_edit_in_a_closed_thread(author, thread, message):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))
    with refused(errors.ThreadClosed):
        edit(message, "too late", agent=author)


@domain
def test_staff_may_edit_any_message_even_in_a_closed_thread(staff, thread, message):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))
    assert edit(message, "[redacted]", staff_user=staff).changed
    [row] = MessageEdit.objects.all()
    assert (row.editor_user_id, row.editor_agent_id, row.editor_name) == (staff.pk, None, "moderator")


@domain
def test_a_user_who_is_not_staff_is_forbidden(message):
    user = get_user_model().objects.create_user("visitor", password="x")
    with refused(errors.Forbidden):
        edit(message, "changed", staff_user=user)


@domain
def test_staff_edits_still_pass_the_content_filter(staff, message):
    with refused(errors.ContentBlocked):
        edit(message, SECRET, staff_user=staff)


@domain
def test_an_edit_has_exactly_one_editor(author, staff, message):
    with pytest.raises(ValueError):
        edit(message, "x")
    with pytest.raises(ValueError):
        edit(message, "x", agent=author, staff_user=staff)


@domain
def test_search_finds_the_new_content_and_not_the_old(author, message):
    edit(message, "rewritten entirely", agent=author)
    assert [h.message.pk for h in search.search_messages(query="rewritten")[0]] == [message.pk]
    assert search.search_messages(query="draft")[0] == []


@domain
def test_an_edit_leaves_the_threads_seq_and_activity_alone(author, thread, message):
    before = type(thread).objects.get(pk=thread.pk)
    edit(message, "changed", agent=author)
    after = type(thread).objects.get(pk=thread.pk)
    assert (after.last_seq, after.updated_at) == (before.last_seq, before.updated_at)


@domain
def test_edit_is_announced_after_commit_only(author, message, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(events, "group_send", lambda group, event: sent.append(event["type"]))
    with django_capture_on_commit_callbacks() as callbacks:
        edit(message, "announced", agent=author)
        assert sent == []  # nothing is sent inside the transaction
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent == ["thread.edit"]


@pytest.mark.django_db(transaction=True)
def test_edit_sends_a_thread_edit_event_to_the_threads_group(author, message, monkeypatch):
    sent = []
    monkeypatch.setattr(events, "group_send", lambda group, event: sent.append((group, event)))
    edit(message, "announced", agent=author)
    assert sent == [
        (
            events.thread_group(message.thread_id),
            {
                "type": "thread.edit",
                "thread_id": str(message.thread_id),
                "msg_id": str(message.pk),
                "seq": message.seq,
                "edit_version": 1,
            },
        )
    ]
    sent.clear()
    edit(message, "announced", agent=author)  # no change: no announcement
    assert sent == []


# --- over the wire --------------------------------------------------------------------------


async def post_first(client) -> tuple[str, dict]:
    created = await client.call("thread_create", {"topic": "wire"})
    thread_id = created["thread"]["thread_id"]
    posted = await client.call(
        "msg_post",
        {
            "thread_id": thread_id,
            "content": "first draft",
            "expected_last_seq": created["current_seq"],
            "reply_token": created["reply_token"],
        },
    )
    return thread_id, posted


@pytest.mark.django_db(transaction=True)
async def test_msg_edit_and_history_round_trip(connect):
    client, me = await registered(connect)
    _thread_id, posted = await post_first(client)
    msg_id = posted["message"]["msg_id"]

    result = await client.call("msg_edit", {"msg_id": msg_id, "content": "second draft"})
    assert result["no_change"] is False
    assert result["message"]["content"] == "second draft"
    assert result["message"]["edit_version"] == 1
    assert result["message"]["edited_at"] is not None
    assert result["message"]["seq"] == posted["message"]["seq"]

    same = await client.call("msg_edit", {"msg_id": msg_id, "content": "second draft"})
    assert same["no_change"] is True
    assert same["message"]["edit_version"] == 1

    history = await client.call("msg_edit_history", {"msg_id": msg_id})
    assert history["msg_id"] == msg_id
    [entry] = history["edits"]
    assert set(entry) == {"version", "old_content", "edited_by", "editor_name", "created_at"}
    assert (entry["version"], entry["old_content"], entry["edited_by"]) == (1, "first draft", me["agent_id"])

    got = await client.call("msg_get", {"msg_id": msg_id})
    assert got["message"]["content"] == "second draft"


@pytest.mark.django_db(transaction=True)
async def test_msg_edit_errors_over_the_wire(connect, agentchat_settings):
    agentchat_settings(MAX_MESSAGE_CHARS=100)
    author, _ = await registered(connect)
    stranger, _ = await registered(connect, model="Claude")
    thread_id, posted = await post_first(author)
    msg_id = posted["message"]["msg_id"]

    cases = [
        (stranger, {"msg_id": msg_id, "content": "mine now"}, "Forbidden", None),
        (author, {"msg_id": UNKNOWN_ID, "content": "x"}, "NotFound", None),
        (author, {"msg_id": msg_id}, "BadRequest", "content"),
        (author, {"content": "x"}, "BadRequest", "msg_id"),
        (author, {"msg_id": msg_id, "content": 5}, "BadRequest", "content"),
        (author, {"msg_id": msg_id, "content": " "}, "BadRequest", "content"),
        (author, {"msg_id": msg_id, "content": "x" * 101}, "PayloadTooLarge", "content"),
        (author, {"msg_id": msg_id, "content": SECRET}, "ContentBlocked", None),
    ]
    for client, args, code, field in cases:
        error = await client.error("msg_edit", args)
        assert error["code"] == code, (args, error)
        if field:
            assert error["field"] == field

    await author.call("thread_close", {"thread_id": thread_id})
    error = await author.error("msg_edit", {"msg_id": msg_id, "content": "closed"})
    assert error["code"] == "ThreadClosed"

    unchanged = await author.call("msg_get", {"msg_id": msg_id})
    assert (unchanged["message"]["content"], unchanged["message"]["edit_version"]) == ("first draft", 0)
    assert (await author.call("msg_edit_history", {"msg_id": msg_id}))["edits"] == []


@pytest.mark.django_db(transaction=True)
async def test_msg_edit_history_errors_over_the_wire(connect):
    client, _ = await registered(connect)
    error = await client.error("msg_edit_history", {"msg_id": UNKNOWN_ID})
    assert (error["code"], error["resource"]) == ("NotFound", "message")
    error = await client.error("msg_edit_history", {})
    assert (error["code"], error["field"]) == ("BadRequest", "msg_id")
    anonymous = await connect()
    error = await anonymous.error("msg_edit_history", {"msg_id": UNKNOWN_ID})
    assert error["code"] == "Unauthenticated"


@pytest.mark.django_db(transaction=True)
async def test_history_of_a_human_only_message_hides_old_content_from_agents(connect):
    client, _ = await registered(connect)
    thread_id = (await client.call("thread_create", {"topic": "hidden"}))["thread"]["thread_id"]

    @database_sync_to_async
    def human_post_and_staff_edit():
        from threads.models import Thread

        staff = get_user_model().objects.create_user("moderator", password="x", is_staff=True)
        thread = Thread.objects.get(pk=thread_id)
        message = services.post_human_message(thread=thread, content="private", author_name="alice", human_only=True)
        services.edit_message(msg_id=str(message.pk), content="still private", staff_user=staff)
        return str(message.pk)

    msg_id = await human_post_and_staff_edit()
    [entry] = (await client.call("msg_edit_history", {"msg_id": msg_id}))["edits"]
    assert entry["old_content"] == HIDDEN_CONTENT
    assert (entry["edited_by"], entry["editor_name"]) == (None, "moderator")


@pytest.mark.django_db(transaction=True)
async def test_an_edit_wakes_no_waiter_and_shows_in_the_waiters_next_read(connect):
    author, _ = await registered(connect)
    reader, _ = await registered(connect, model="Claude")
    thread_id, posted = await post_first(author)
    msg_id = posted["message"]["msg_id"]

    wait_id = await reader.send("msg_wait", {"thread_id": thread_id, "after_seq": 1, "timeout_ms": 10_000})
    await asyncio.sleep(0.3)  # the wait is asleep in the waiting room
    await author.call("msg_edit", {"msg_id": msg_id, "content": "edited while you waited"})
    assert await reader.nothing(timeout=0.5)  # the edit woke nothing

    await author.call(
        "msg_post",
        {
            "thread_id": thread_id,
            "content": "a new message",
            "expected_last_seq": posted["current_seq"],
            "reply_token": posted["reply_token"],
        },
    )
    woken = (await reader.reply(wait_id))["result"]
    assert [m["seq"] for m in woken["messages"]] == [2]

    listed = await reader.call("msg_list", {"thread_id": thread_id})
    first = listed["messages"][0]
    assert (first["content"], first["edit_version"]) == ("edited while you waited", 1)
    joined = await reader.call("bus_connect", {"thread_id": thread_id})
    assert joined["messages"][0]["content"] == "edited while you waited"


@pytest.mark.django_db(transaction=True)
async def test_edit_is_announced_on_the_channel_layer(connect):
    client, _ = await registered(connect)
    thread_id, posted = await post_first(client)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.thread_group(thread_id), channel)
    try:
        await client.call("msg_edit", {"msg_id": posted["message"]["msg_id"], "content": "announced"})
        event = await asyncio.wait_for(layer.receive(channel), timeout=5)
        if event["type"] == "thread.message":  # the post's own wake-up, sent after its reply
            event = await asyncio.wait_for(layer.receive(channel), timeout=5)
        assert event == {
            "type": "thread.edit",
            "thread_id": thread_id,
            "msg_id": posted["message"]["msg_id"],
            "seq": 1,
            "edit_version": 1,
        }
    finally:
        await layer.group_discard(events.thread_group(thread_id), channel)
