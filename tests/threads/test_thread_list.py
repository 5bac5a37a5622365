"""Listing threads: selectors.list_threads (order, filters, cursor), then thread_list over the wire."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from agentchat import errors
from tests.support.domain import STAFF, join, post
from tests.support.wire import (
    THREAD_KEYS,
    new_thread,
    registered,
)
from threads import selectors, services
from threads.models import Thread

pytestmark = pytest.mark.django_db


def make_threads(agent, count, *, start=None):
    """Threads t0..t{count-1}, each one minute more recently active than the last."""
    start = start or timezone.now() - timedelta(hours=1)
    made = []
    for n in range(count):
        thread, _ = services.create_thread(agent=agent, topic=f"t{n}")
        Thread.objects.filter(pk=thread.pk).update(updated_at=start + timedelta(minutes=n))
        made.append(thread)
    return made


def topics(threads):
    return [t.topic for t in threads]


def test_list_threads_is_newest_activity_first(agent):
    make_threads(agent, 3)

    threads, has_more = selectors.list_threads()

    assert topics(threads) == ["t2", "t1", "t0"]
    assert has_more is False


def test_a_post_moves_a_thread_to_the_top(agent):
    oldest = make_threads(agent, 3)[0]

    post(agent, oldest, join(agent, oldest))

    assert topics(selectors.list_threads()[0]) == ["t0", "t2", "t1"]


def test_list_threads_leaves_out_archived_unless_asked_for(agent):
    made = make_threads(agent, 3)
    services.archive_thread(staff_user=STAFF, thread_id=str(made[1].pk))

    assert topics(selectors.list_threads()[0]) == ["t2", "t0"]
    assert topics(selectors.list_threads(status="archived")[0]) == ["t1"]


def test_list_threads_filters_by_status(agent):
    made = make_threads(agent, 3)
    services.close_thread(staff_user=STAFF, thread_id=str(made[0].pk))
    Thread.objects.filter(pk=made[0].pk).update(updated_at=timezone.now() - timedelta(days=1))

    assert topics(selectors.list_threads(status="closed")[0]) == ["t0"]
    assert topics(selectors.list_threads(status="discuss")[0]) == ["t2", "t1"]


def test_list_threads_pages_through_everything_once_with_the_cursor(agent):
    made = make_threads(agent, 5)
    # Two threads with the same activity time still page apart.
    Thread.objects.filter(pk=made[3].pk).update(updated_at=Thread.objects.get(pk=made[2].pk).updated_at)

    seen, cursor, pages = [], None, []
    while True:
        page, has_more = selectors.list_threads(limit=2, before=cursor)
        seen.extend(page)
        pages.append((len(page), has_more))
        if not has_more:
            break
        cursor = selectors.encode_cursor(page[-1])

    assert pages == [(2, True), (2, True), (1, False)]
    assert sorted(topics(seen)) == ["t0", "t1", "t2", "t3", "t4"]
    assert len({t.pk for t in seen}) == 5


def test_list_threads_has_more_is_false_on_an_exact_last_page(agent):
    make_threads(agent, 2)

    page, has_more = selectors.list_threads(limit=2)

    assert len(page) == 2
    assert has_more is False


@pytest.mark.parametrize("cursor", ["garbage!", "", "bm90IGpzb24", "WyJub3QgYSBkYXRlIiwgIngiXQ"])
def test_list_threads_with_a_bad_cursor_is_bad_request(cursor):
    with pytest.raises(errors.BadRequest) as info:
        selectors.list_threads(before=cursor)

    assert info.value.extra["field"] == "before"


# --- thread_list over the wire -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_thread_list_is_newest_first_and_leaves_out_archived(connect):
    client, _ = await registered(connect)
    ids = [(await new_thread(client, topic))["thread"]["thread_id"] for topic in ("a", "b", "c")]
    await client.call("thread_archive", {"thread_id": ids[1]})
    result = await client.call("thread_list")
    assert set(result) == {"threads", "next_cursor", "has_more"}
    assert [t["thread_id"] for t in result["threads"]] == [ids[2], ids[0]]
    assert all(set(t) == THREAD_KEYS for t in result["threads"])
    assert (result["has_more"], result["next_cursor"]) == (False, None)
    archived = await client.call("thread_list", {"status": "archived"})
    assert [t["thread_id"] for t in archived["threads"]] == [ids[1]]


@pytest.mark.django_db(transaction=True)
async def test_thread_list_filters_by_status(connect):
    client, _ = await registered(connect)
    ids = [(await new_thread(client, topic))["thread"]["thread_id"] for topic in ("a", "b")]
    await client.call("thread_set_state", {"thread_id": ids[0], "state": "review"})
    result = await client.call("thread_list", {"status": "review"})
    assert [t["thread_id"] for t in result["threads"]] == [ids[0]]


@pytest.mark.django_db(transaction=True)
async def test_thread_list_pages_with_the_cursor(connect):
    client, _ = await registered(connect)
    ids = [(await new_thread(client, f"t{n}"))["thread"]["thread_id"] for n in range(5)]
    first = await client.call("thread_list", {"limit": 2})
    assert [t["thread_id"] for t in first["threads"]] == [ids[4], ids[3]]
    assert first["has_more"] is True and isinstance(first["next_cursor"], str)
    second = await client.call("thread_list", {"limit": 2, "before": first["next_cursor"]})
    assert [t["thread_id"] for t in second["threads"]] == [ids[2], ids[1]]
    third = await client.call("thread_list", {"limit": 2, "before": second["next_cursor"]})
    assert [t["thread_id"] for t in third["threads"]] == [ids[0]]
    assert (third["has_more"], third["next_cursor"]) == (False, None)


@pytest.mark.django_db(transaction=True)
async def test_thread_list_clamps_a_limit_over_the_maximum(connect):
    @database_sync_to_async
    def make_threads() -> None:
        Thread.objects.bulk_create([Thread(topic=f"bulk {n}") for n in range(201)])

    await make_threads()
    client, _ = await registered(connect)
    result = await client.call("thread_list", {"limit": 5000})
    assert len(result["threads"]) == 200
    assert result["has_more"] is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "args, field",
    [
        ({"status": "bogus"}, "status"),
        ({"status": 1}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"before": "not a cursor"}, "before"),
        ({"before": 7}, "before"),
    ],
)
async def test_thread_list_with_bad_arg_is_bad_request(connect, args, field):
    client, _ = await registered(connect)
    error = await client.error("thread_list", args)
    assert error["code"] == "BadRequest"
    assert error["field"] == field
