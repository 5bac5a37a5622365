"""Thread status: set_thread_state, close_thread and archive_thread on the domain layer, then over the wire."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from agentchat import errors
from tests.support.domain import STAFF
from tests.support.wire import (
    UNKNOWN_ID,
    new_thread,
    registered,
)
from threads import services
from threads.models import Thread

pytestmark = pytest.mark.django_db


def test_set_thread_state_moves_freely_among_the_open_states(thread):
    for state in ["implement", "review", "done", "discuss", "review"]:
        changed = services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state=state)
        assert changed.status == state
        assert Thread.objects.get(pk=thread.pk).status == state


@pytest.mark.parametrize("state", ["closed", "archived"])
def test_set_thread_state_to_closed_or_archived_is_invalid_transition(thread, state):
    with pytest.raises(errors.InvalidTransition):
        services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state=state)

    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.DISCUSS


def test_set_thread_state_to_an_unknown_state_is_bad_request(thread):
    with pytest.raises(errors.BadRequest) as info:
        services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="party")

    assert info.value.extra["field"] == "state"


def test_set_thread_state_of_unknown_thread_is_not_found():
    with pytest.raises(errors.NotFound):
        services.set_thread_state(staff_user=STAFF, thread_id=str(uuid.uuid4()), state="review")


def test_set_thread_state_reopens_a_closed_thread(thread):
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))

    reopened = services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="implement")

    stored = Thread.objects.get(pk=thread.pk)
    assert reopened.status == stored.status == Thread.Status.IMPLEMENT
    assert stored.closed_at is None


def test_set_thread_state_reopens_an_archived_thread(thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="discuss")

    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.DISCUSS


def test_reopening_an_archived_thread_whose_topic_was_reused_is_conflict(agent, thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))
    services.create_thread(agent=agent, topic="plan")

    with pytest.raises(errors.Conflict):
        services.set_thread_state(staff_user=STAFF, thread_id=str(thread.pk), state="discuss")

    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.ARCHIVED


def test_close_thread_sets_closed_at_and_summary(thread):
    moment = timezone.now()

    closed = services.close_thread(staff_user=STAFF, thread_id=str(thread.pk), summary="we agreed", now=moment)

    stored = Thread.objects.get(pk=thread.pk)
    assert closed.status == stored.status == Thread.Status.CLOSED
    assert stored.closed_at == moment
    assert stored.summary == "we agreed"


def test_closing_twice_is_harmless_and_keeps_the_first_closed_at(thread):
    first = timezone.now()
    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk), now=first)

    again = services.close_thread(staff_user=STAFF, thread_id=str(thread.pk), now=first + timedelta(hours=1))

    assert again.status == Thread.Status.CLOSED
    assert Thread.objects.get(pk=thread.pk).closed_at == first


def test_archiving_twice_is_harmless(thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))
    closed_at = Thread.objects.get(pk=thread.pk).closed_at

    again = services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    assert again.status == Thread.Status.ARCHIVED
    assert closed_at is not None
    assert Thread.objects.get(pk=thread.pk).closed_at == closed_at


def test_closing_an_archived_thread_leaves_it_archived(thread):
    services.archive_thread(staff_user=STAFF, thread_id=str(thread.pk))

    services.close_thread(staff_user=STAFF, thread_id=str(thread.pk))

    assert Thread.objects.get(pk=thread.pk).status == Thread.Status.ARCHIVED


@pytest.mark.parametrize("thread_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_closing_an_unknown_thread_is_not_found(thread_id):
    with pytest.raises(errors.NotFound) as info:
        services.close_thread(staff_user=STAFF, thread_id=thread_id)

    assert info.value.extra["resource"] == "thread"


# --- thread_set_state, thread_close and thread_archive over the wire ---------------------


@pytest.mark.django_db(transaction=True)
async def test_thread_set_state_moves_among_open_states(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    for state in ("implement", "review", "done", "discuss"):
        result = await client.call("thread_set_state", {"thread_id": thread_id, "state": state})
        assert set(result) == {"thread"}
        assert result["thread"]["status"] == state


@pytest.mark.django_db(transaction=True)
async def test_thread_set_state_reopens_a_closed_thread(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    await client.call("thread_close", {"thread_id": thread_id})
    thread = (await client.call("thread_set_state", {"thread_id": thread_id, "state": "review"}))["thread"]
    assert (thread["status"], thread["closed_at"]) == ("review", None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("state", ["closed", "archived"])
async def test_thread_set_state_to_closed_or_archived_is_invalid_transition(connect, state):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    error = await client.error("thread_set_state", {"thread_id": thread_id, "state": state})
    assert error["code"] == "InvalidTransition"
    assert (await client.call("thread_get", {"thread_id": thread_id}))["thread"]["status"] == "discuss"


@pytest.mark.django_db(transaction=True)
async def test_thread_set_state_reopening_an_archived_thread_whose_topic_is_taken_is_conflict(connect):
    client, _ = await registered(connect)
    old_id = (await new_thread(client, "plan"))["thread"]["thread_id"]
    await client.call("thread_archive", {"thread_id": old_id})
    await new_thread(client, "plan")
    error = await client.error("thread_set_state", {"thread_id": old_id, "state": "discuss"})
    assert error["code"] == "Conflict"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "args, field",
    [
        ({"state": "review"}, "thread_id"),
        ({"thread_id": UNKNOWN_ID}, "state"),
        ({"thread_id": UNKNOWN_ID, "state": 3}, "state"),
    ],
)
async def test_thread_set_state_with_missing_or_mistyped_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("thread_set_state", args)
    assert (error["code"], error["field"]) == ("BadRequest", field)


@pytest.mark.django_db(transaction=True)
async def test_thread_set_state_to_an_unknown_state_is_bad_request(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    error = await client.error("thread_set_state", {"thread_id": thread_id, "state": "bogus"})
    assert (error["code"], error["field"]) == ("BadRequest", "state")


@pytest.mark.django_db(transaction=True)
async def test_thread_set_state_of_unknown_thread_is_not_found(connect):
    client, _ = await registered(connect)
    error = await client.error("thread_set_state", {"thread_id": UNKNOWN_ID, "state": "review"})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")


@pytest.mark.django_db(transaction=True)
async def test_thread_close_sets_closed_at_and_summary_and_is_harmless_twice(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client))["thread"]["thread_id"]
    result = await client.call("thread_close", {"thread_id": thread_id, "summary": "done deal"})
    assert set(result) == {"thread"}
    thread = result["thread"]
    assert (thread["status"], thread["summary"]) == ("closed", "done deal")
    assert thread["closed_at"] is not None
    again = (await client.call("thread_close", {"thread_id": thread_id}))["thread"]
    assert (again["status"], again["closed_at"], again["summary"]) == ("closed", thread["closed_at"], "done deal")


@pytest.mark.django_db(transaction=True)
async def test_thread_close_errors(connect):
    client, _ = await registered(connect)
    error = await client.error("thread_close", {"thread_id": UNKNOWN_ID})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")
    error = await client.error("thread_close", {})
    assert (error["code"], error["field"]) == ("BadRequest", "thread_id")
    error = await client.error("thread_close", {"thread_id": UNKNOWN_ID, "summary": 1})
    assert (error["code"], error["field"]) == ("BadRequest", "summary")


@pytest.mark.django_db(transaction=True)
async def test_thread_archive_frees_the_topic_and_is_harmless_twice(connect):
    client, _ = await registered(connect)
    thread_id = (await new_thread(client, "plan"))["thread"]["thread_id"]
    result = await client.call("thread_archive", {"thread_id": thread_id})
    assert set(result) == {"thread"}
    assert result["thread"]["status"] == "archived"
    assert result["thread"]["closed_at"] is not None
    again = await client.call("thread_archive", {"thread_id": thread_id})
    assert again["thread"]["status"] == "archived"
    assert (await new_thread(client, "plan"))["thread"]["thread_id"] != thread_id


@pytest.mark.django_db(transaction=True)
async def test_thread_archive_errors(connect):
    client, _ = await registered(connect)
    error = await client.error("thread_archive", {"thread_id": UNKNOWN_ID})
    assert (error["code"], error["resource"]) == ("NotFound", "thread")
    error = await client.error("thread_archive", {"thread_id": 1.5})
    assert (error["code"], error["field"]) == ("BadRequest", "thread_id")
