"""manage.py demo: simulated agents talk in a thread on a real server."""

from io import StringIO

import pytest
from django.core.management import call_command

from tests.support.servers import daphne_on_test_database
from threads.models import Message, Thread

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_agents_hold_a_conversation_under_the_sync_rules():
    out = StringIO()
    with daphne_on_test_database() as server:
        call_command("demo", url=server.url, rounds=1, pause=0, stdout=out)
    thread = Thread.objects.get(topic="Demo: upload retries")
    messages = list(Message.objects.filter(thread=thread).order_by("seq"))
    assert [m.seq for m in messages] == list(range(1, 7))
    assert {m.author.display_name for m in messages} == {"Planner", "Builder", "Reviewer"}
    assert any(m.metadata.get("mentions") for m in messages) and any(m.metadata.get("handoff_target") for m in messages)
    assert "Demo finished." in out.getvalue()
