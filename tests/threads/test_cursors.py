"""Cursors: they only move forward, and cost one statement per post and per wake-up batch."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.support.domain import join, post
from threads import services
from threads.models import Participant

pytestmark = pytest.mark.django_db


def cursor_statements(captured) -> list[str]:
    """The statements that wrote cursors (a post also reads its agent's voiding serial, in the agent's lock).

    On PostgreSQL a post's cursor upsert is part of the statement that stores the message.
    """
    writes = ('INSERT INTO "threads_participant"', 'UPDATE "threads_participant"')
    return [q["sql"] for q in captured.captured_queries if any(write in q["sql"] for write in writes)]


@pytest.fixture
def thread(make_agent):
    creator, _ = make_agent(model="Creator")
    thread, _ = services.create_thread(agent=creator, topic="cursors")
    return thread


def test_cursors_only_move_forward(make_agent, thread):
    agent, _ = make_agent()
    services.advance_cursors([services.Advance(thread.pk, agent.pk, delivered_seq=5, seen_seq=4, last_post_seq=3)])
    first = Participant.objects.get(thread=thread, agent=agent)
    services.advance_cursors([services.Advance(thread.pk, agent.pk, delivered_seq=2, seen_seq=1, last_post_seq=1)])
    again = Participant.objects.get(thread=thread, agent=agent)
    assert (again.delivered_seq, again.seen_seq, again.last_post_seq) == (5, 4, 3)
    assert (again.delivered_at, again.seen_at, again.last_post_at) == (
        first.delivered_at,
        first.seen_at,
        first.last_post_at,
    )
    services.advance_cursors([services.Advance(thread.pk, agent.pk, delivered_seq=6)])
    assert Participant.objects.get(thread=thread, agent=agent).delivered_seq == 6


def test_a_post_adds_one_statement(make_agent, thread):
    agent, _ = make_agent()
    sync = join(agent, thread)
    with CaptureQueriesContext(connection) as captured:
        post(agent, thread, sync, "hello")
    assert len(cursor_statements(captured)) == 1
    row = Participant.objects.get(thread=thread, agent=agent)
    assert (row.last_post_seq, row.seen_seq) == (1, 0)


@pytest.mark.parametrize("waiters", [1, 50])
def test_a_wake_up_batch_adds_one_statement_whatever_the_number_of_waiters(make_agent, thread, waiters):
    poster, _ = make_agent(model="Poster")
    post(poster, thread, join(poster, thread), "wake up", metadata={"mentions": []})
    agents = [make_agent(model=f"W{n}")[0] for n in range(waiters)]
    requests = [
        services.WaitRequest(agent=a, thread_id=str(thread.pk), after_seq=0, limit=100, for_agent=None, finish=False)
        for a in agents
    ]
    with CaptureQueriesContext(connection) as captured:
        results = services.serve_waits(requests)
    assert all(r.messages for r in results)
    assert len(cursor_statements(captured)) == 1
    assert Participant.objects.filter(thread=thread, agent__in=agents, delivered_seq=1).count() == waiters
