"""On PostgreSQL, a post's statements are prepared once per connection, not parsed and planned per post."""

import pytest
from django.db import connection

from tests.support.domain import post
from threads.models import Thread

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_posting_again_and_again_runs_prepared_statements(agent, thread, sync):
    if connection.vendor != "postgresql":
        pytest.fail("This test needs DATABASE_URL=postgres://... (see the README's test command).")
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    assert threshold, "AGENTCHAT_DB_PREPARE_THRESHOLD turns preparing off"
    # psycopg prepares a statement when it runs again after `threshold` runs with the same parameter
    # types; a thread's first post differs (the author has no cursor yet).
    for n in range(threshold + 2):
        _message, sync = post(agent, thread, sync, content=f"post {n}")

    statements = prepared_statements()
    table = Thread._meta.db_table
    # The thread's row lock and the store of the message, at least.
    assert any(s.startswith("SELECT") and f'FROM "{table}"' in s and "FOR NO KEY UPDATE" in s for s in statements)
    assert any(s.startswith("WITH write_0 AS (UPDATE") for s in statements)
    assert Thread.objects.get(pk=thread.pk).last_seq == sync.current_seq
