"""msg_search: full-text search on both engines, on the domain layer and over the wire."""

import pytest
from channels.db import database_sync_to_async

from agentchat import errors
from tests.support.wire import registered
from tests.threads.toolbox import UNKNOWN_ID, post_as
from threads import search, services
from threads.models import Thread

domain = pytest.mark.django_db

PASSING_MENTION = (
    "Notes from the planning call. We agreed on the release date, moved the dashboard work to next week, "
    "discussed hiring for the platform team, reviewed the budget for the offsite, looked at the support "
    "queue, argued about naming, and at the very end someone said the redis deadlock might come back. "
    "Then we talked about lunch options, the new office chairs and the holiday schedule for December."
)
ABOUT_IT = "Redis deadlock: the redis subscriber deadlocks when the deadlock detector holds the redis lock."


@pytest.fixture(autouse=True)
def no_rate_limit(agentchat_settings):
    agentchat_settings(RATE_LIMIT_PER_MINUTE=0)


def found(query, **kwargs):
    hits, _ = search.search_messages(query=query, **kwargs)
    return [hit.message.content for hit in hits]


@domain
def test_search_finds_a_word_and_not_an_absent_one(agent, thread):
    post_as(agent, thread, "The waiting room wakes every waiter after commit.")
    post_as(agent, thread, "Nothing to see here.")
    assert found("waiter") == ["The waiting room wakes every waiter after commit."]
    assert found("elephant") == []


@domain
def test_every_word_of_the_query_must_match(agent, thread):
    post_as(agent, thread, "alpha beta")
    post_as(agent, thread, "alpha gamma")
    assert found("alpha beta") == ["alpha beta"]
    assert sorted(found("alpha")) == ["alpha beta", "alpha gamma"]


@domain
def test_search_is_case_insensitive_and_ignores_punctuation(agent, thread):
    post_as(agent, thread, "Fix the Deadlock in waiting_room.py, please!")
    assert found("DEADLOCK") == ["Fix the Deadlock in waiting_room.py, please!"]
    assert found("deadlock, please?") == ["Fix the Deadlock in waiting_room.py, please!"]


@domain
def test_a_message_about_the_words_ranks_above_a_passing_mention(agent, thread):
    post_as(agent, thread, PASSING_MENTION)
    post_as(agent, thread, ABOUT_IT)
    hits, _ = search.search_messages(query="redis deadlock")
    assert [hit.message.content for hit in hits] == [ABOUT_IT, PASSING_MENTION]
    assert hits[0].rank > hits[1].rank


@domain
def test_the_snippet_marks_the_words_found(agent, thread):
    post_as(agent, thread, PASSING_MENTION)
    [hit], _ = search.search_messages(query="deadlock")
    assert "<mark>deadlock</mark>" in hit.snippet
    assert len(hit.snippet) < len(PASSING_MENTION)


@domain
def test_thread_id_scopes_the_search(agent, thread):
    other = services.create_thread(agent=agent, topic="other")[0]
    post_as(agent, thread, "needle in plan")
    post_as(agent, other, "needle in other")
    assert found("needle", thread_id=str(other.pk)) == ["needle in other"]
    assert sorted(found("needle")) == ["needle in other", "needle in plan"]


@domain
@pytest.mark.parametrize("thread_id", [UNKNOWN_ID, "not-a-uuid"])
def test_an_unknown_thread_is_not_found(agent, thread_id):
    with pytest.raises(errors.NotFound) as info:
        search.search_messages(query="x", thread_id=thread_id)
    assert info.value.extra["resource"] == "thread"


@domain
def test_human_only_content_is_never_returned_to_agents_but_the_admin_finds_it(agent, thread):
    post_as(agent, thread, "public launch codename")
    services.post_human_message(thread=thread, content="secret launch codename", author_name="alice", human_only=True)
    services.post_human_message(thread=thread, content="open launch codename", author_name="alice")
    assert sorted(found("codename")) == ["open launch codename", "public launch codename"]
    assert found("secret") == []
    assert found("secret", include_human_only=True) == ["secret launch codename"]
    assert len(found("codename", include_human_only=True)) == 3


@domain
@pytest.mark.parametrize("query", ["", "   ", "!!! --- ???", "AND OR NOT", "NEAR", '"" * ( ) : ^', "___"])
def test_a_query_without_words_is_bad_request(agent, thread, query):
    post_as(agent, thread, "and or not near")
    with pytest.raises(errors.BadRequest) as info:
        search.search_messages(query=query)
    assert info.value.extra["field"] == "query"


@domain
@pytest.mark.parametrize(
    "query",
    ['"unbalanced', 'alpha" OR "beta', "NEAR(alpha beta)", "alpha*", "-alpha", "content:alpha", "alpha & | ! beta"],
)
def test_query_syntax_of_either_engine_is_read_as_plain_words(agent, thread, query):
    post_as(agent, thread, "alpha beta")
    search.search_messages(query=query)  # never a database error


@domain
def test_operators_between_words_are_dropped(agent, thread):
    post_as(agent, thread, "alpha beta")
    assert found("alpha AND beta") == ["alpha beta"]
    assert found("alpha OR zeta") == []  # OR is not an operator here: every word must match


@domain
def test_limit_and_cursor_page_through_the_results(agent, thread):
    for n in range(5):
        post_as(agent, thread, f"page item {n}")
    seen, cursor, pages = [], None, 0
    while True:
        hits, cursor = search.search_messages(query="item", limit=2, cursor=cursor)
        pages += 1
        seen += [hit.message.pk for hit in hits]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5


@domain
@pytest.mark.parametrize("cursor", ["garbage", "eyJvZmZzZXQiOiAtMX0", "bnVsbA"])
def test_a_bad_cursor_is_bad_request(cursor):
    with pytest.raises(errors.BadRequest) as info:
        search.search_messages(query="x", cursor=cursor)
    assert info.value.extra["field"] == "cursor"


@domain
def test_human_posts_from_the_admin_are_indexed_by_the_same_path(agent, thread):
    services.post_human_message(thread=thread, content="posted by a human", author_name="alice")
    assert found("human") == ["posted by a human"]


@domain
@pytest.mark.postgres
def test_postgres_matches_other_forms_of_a_word(agent, thread):
    post_as(agent, thread, "The subscriber deadlocked twice.")
    assert found("deadlocks") == ["The subscriber deadlocked twice."]


@domain
@pytest.mark.postgres
def test_postgres_search_uses_the_gin_index():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM threads_message WHERE search_vector @@ plainto_tsquery('english', 'redis')"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert search.PG_INDEX in plan


# --- over the wire --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_msg_search_round_trip(connect):
    client, _ = await registered(connect)
    created = await client.call("thread_create", {"topic": "wire"})
    thread_id = created["thread"]["thread_id"]
    await client.call(
        "msg_post",
        {
            "thread_id": thread_id,
            "content": "the waiting room never polls",
            "expected_last_seq": created["current_seq"],
            "reply_token": created["reply_token"],
        },
    )

    @database_sync_to_async
    def human_only_post():
        services.post_human_message(
            thread=Thread.objects.get(pk=thread_id), content="the room is haunted", author_name="a", human_only=True
        )

    await human_only_post()

    result = await client.call("msg_search", {"query": "room", "thread_id": thread_id, "limit": 5})
    assert set(result) == {"results", "next_cursor", "has_more"}
    [hit] = result["results"]
    assert set(hit) == {"message", "snippet", "rank"}
    assert hit["message"]["content"] == "the waiting room never polls"
    assert "<mark>room</mark>" in hit["snippet"]
    assert isinstance(hit["rank"], float)
    assert (result["next_cursor"], result["has_more"]) == (None, False)
    assert (await client.call("msg_search", {"query": "haunted"}))["results"] == []


@pytest.mark.django_db(transaction=True)
async def test_msg_search_errors_over_the_wire(connect):
    client, _ = await registered(connect)
    for args, code, field in [
        ({}, "BadRequest", "query"),
        ({"query": 3}, "BadRequest", "query"),
        ({"query": "?!"}, "BadRequest", "query"),
        ({"query": "x" * 1001}, "BadRequest", "query"),
        ({"query": "x", "cursor": "nope"}, "BadRequest", "cursor"),
        ({"query": "x", "limit": 0}, "BadRequest", "limit"),
        ({"query": "x", "thread_id": UNKNOWN_ID}, "NotFound", None),
    ]:
        error = await client.error("msg_search", args)
        assert error["code"] == code, (args, error)
        if field:
            assert error["field"] == field
    anonymous = await connect()
    assert (await anonymous.error("msg_search", {"query": "x"}))["code"] == "Unauthenticated"


@pytest.mark.django_db(transaction=True)
async def test_msg_search_clamps_limit(connect):
    client, _ = await registered(connect)
    result = await client.call("msg_search", {"query": "anything", "limit": 10_000})
    assert result["results"] == []
