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


@pytest.mark.parametrize("agents", [1, 30])  # listed as VALUES, and sent as one JSON parameter
def test_a_batch_of_any_size_stores_every_field_and_only_moves_forward(make_agent, thread, agents):
    agents = [make_agent(model=f"A{n}")[0] for n in range(agents)]
    forward = [
        services.Advance(
            thread.pk, a.pk, delivered_seq=5, seen_seq=4, owed_seq=3, last_post_seq=2, void_before=10**15 + n
        )
        for n, a in enumerate(agents)
    ]
    services.advance_cursors(forward)
    rows = {p.agent_id: p for p in Participant.objects.filter(thread=thread, agent__in=agents)}
    assert len(rows) == len(agents)
    for n, a in enumerate(agents):
        row = rows[a.pk]
        assert (row.delivered_seq, row.seen_seq, row.owed_seq, row.last_post_seq) == (5, 4, 3, 2)
        assert (row.tokens_void_before, row.joined_at.tzinfo is not None) == (10**15 + n, True)
        assert row.delivered_at == row.seen_at == row.owed_since == row.last_post_at == row.joined_at

    services.advance_cursors([services.Advance(thread.pk, a.pk, delivered_seq=1, void_before=1) for a in agents])
    again = {p.agent_id: p for p in Participant.objects.filter(thread=thread, agent__in=agents)}
    for a in agents:
        assert (again[a.pk].delivered_seq, again[a.pk].delivered_at) == (5, rows[a.pk].delivered_at)
        assert again[a.pk].tokens_void_before == rows[a.pk].tokens_void_before
