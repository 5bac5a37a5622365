"""msg_post under real concurrency: many connections racing on one PostgreSQL thread row.

Each poster is a Python thread with its own database connection, so the row
lock, the unique constraints and READ COMMITTED re-reads are exercised for
real. SQLite serializes whole transactions, which would prove nothing here, so
this module belongs to the PostgreSQL pass only.
"""

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from agentchat import errors
from threads import services
from threads.models import Message, Thread

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

POSTERS = 20
POSTS_EACH = 5


@pytest.fixture(autouse=True)
def needs_postgres(agentchat_settings):
    if connection.vendor != "postgresql":
        pytest.fail("These tests need DATABASE_URL=postgres://... (see the README's test command).")
    # Many posts per agent within a minute are the point here, not the rate limit.
    agentchat_settings(RATE_LIMIT_PER_MINUTE=0)


def run_together(workers):
    """Run each callable in its own thread, released at once; return results or exceptions in order."""
    barrier = threading.Barrier(len(workers))
    results = [None] * len(workers)

    def run(index, work):
        try:
            barrier.wait(timeout=30)
            results[index] = work()
        except Exception as exc:  # reported to the test, never lost in the thread
            results[index] = exc
        finally:
            connections.close_all()  # this thread's connections only

    threads = [threading.Thread(target=run, args=(i, work)) for i, work in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return results


def test_concurrent_posters_get_gap_free_seqs_and_every_acknowledged_post_is_stored(make_agent):
    agents = [make_agent(model=f"Poster{n}")[0] for n in range(POSTERS)]
    thread, _ = services.create_thread(agent=agents[0], topic="race")
    thread_id = str(thread.pk)

    def poster(agent):
        def work():
            acknowledged = []
            context = services.finish_wait(agent=agent, thread_id=thread_id, read_seq=0)
            for _attempt in range(5000):
                if len(acknowledged) == POSTS_EACH:
                    return acknowledged
                try:
                    message, context = services.post_message(
                        agent=agent,
                        thread_id=thread_id,
                        content=f"{agent.name} #{len(acknowledged)}",
                        expected_last_seq=context.current_seq,
                        reply_token=context.reply_token,
                    )
                except errors.SeqMismatch as exc:
                    # Read what was missed, then take a fresh token as msg_wait would.
                    context = services.finish_wait(agent=agent, thread_id=thread_id, read_seq=exc.extra["current_seq"])
                else:
                    acknowledged.append((message.pk, message.seq))
            raise AssertionError(f"{agent.name} could not post {POSTS_EACH} times")

        return work

    results = run_together([poster(agent) for agent in agents])

    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    acknowledged = [ack for per_agent in results for ack in per_agent]
    total = POSTERS * POSTS_EACH
    assert len(acknowledged) == total
    stored = list(Message.objects.filter(thread_id=thread_id).order_by("seq").values_list("pk", "seq"))
    assert [seq for _, seq in stored] == list(range(1, total + 1))
    assert sorted(acknowledged, key=lambda ack: ack[1]) == stored
    assert Thread.objects.get(pk=thread_id).last_seq == total
    per_author = Counter(Message.objects.filter(thread_id=thread_id).values_list("author_id", flat=True))
    assert per_author == {agent.pk: POSTS_EACH for agent in agents}


def test_two_posts_racing_with_one_token_store_exactly_one_message(make_agent):
    agent, _ = make_agent()
    thread, sync = services.create_thread(agent=agent, topic="same token")

    def attempt(content):
        def work():
            message, _ = services.post_message(
                agent=agent,
                thread_id=str(thread.pk),
                content=content,
                expected_last_seq=0,
                reply_token=sync.reply_token,
            )
            return message

        return work

    results = run_together([attempt("first"), attempt("second")])

    outcomes = sorted(type(r).__name__ for r in results)
    assert outcomes == ["Message", "ReplyTokenReplay"]
    assert Message.objects.filter(thread=thread).count() == 1
    assert Thread.objects.get(pk=thread.pk).last_seq == 1
    assert Message.objects.filter(thread=thread, token_nonce__isnull=False).count() == 1


def test_concurrent_retries_with_one_client_msg_id_store_one_message(make_agent):
    agent, _ = make_agent()
    thread, sync = services.create_thread(agent=agent, topic="retries")

    def retry():
        message, context = services.post_message(
            agent=agent,
            thread_id=str(thread.pk),
            content="exactly once",
            expected_last_seq=0,
            reply_token=sync.reply_token,
            client_msg_id="retry-1",
        )
        return message, context

    results = run_together([retry] * 6)

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert {message.pk for message, _ in results} == {Message.objects.get(thread=thread).pk}
    assert {context.current_seq for _, context in results} == {1}
    assert Thread.objects.get(pk=thread.pk).last_seq == 1


def test_one_client_msg_id_posted_to_two_threads_at_once_stores_one_message(make_agent):
    agent, _ = make_agent()
    first, first_sync = services.create_thread(agent=agent, topic="first")
    second, second_sync = services.create_thread(agent=agent, topic="second")

    def post_to(thread, sync):
        def work():
            message, _ = services.post_message(
                agent=agent,
                thread_id=str(thread.pk),
                content="exactly once",
                expected_last_seq=0,
                reply_token=sync.reply_token,
                client_msg_id="shared",
            )
            return message

        return work

    results = run_together([post_to(first, first_sync), post_to(second, second_sync)])

    assert [r for r in results if isinstance(r, BaseException)] == []
    stored = Message.objects.get(client_msg_id="shared")
    assert {message.pk for message in results} == {stored.pk}
    last_seqs = sorted(Thread.objects.filter(pk__in=[first.pk, second.pk]).values_list("last_seq", flat=True))
    assert last_seqs == [0, 1]
