"""msg_search latency on PostgreSQL over 100,000 messages: printed, not asserted.

    AGENTCHAT_BENCH_SEARCH=1 DATABASE_URL=postgres://... .venv/bin/python -m pytest --create-db -s \\
        tests/threads/test_msg_search_latency.py

It takes a minute or two (most of it generating the messages), so the test
suite skips it unless AGENTCHAT_BENCH_SEARCH is set.

The messages are generated inside PostgreSQL: 100 threads of 1,000 messages,
each 20 to 80 words of 4 to 9 letters drawn with a skewed (Zipf-like)
distribution from a 2,000-word vocabulary, so a few words are in most messages and most words
are rare; "deadlock" is in about 1% of them and "zanzibar" in 10. Each query
goes through `search_messages` (the ranked page of 20 and its snippets), as
msg_search runs it.
"""

import os
import statistics
import time

import pytest
from django.db import connection

from threads import search, services
from threads.models import Thread

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db,
    pytest.mark.skipif(not os.environ.get("AGENTCHAT_BENCH_SEARCH"), reason="set AGENTCHAT_BENCH_SEARCH=1 to run"),
    pytest.mark.timeout(900),
]

MESSAGES = 100_000
THREADS = 100
RUNS = 15


def generate(agent) -> list[Thread]:
    threads = [services.create_thread(agent=agent, topic=f"bench {n}")[0] for n in range(THREADS)]
    per_thread = MESSAGES // THREADS
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE vocab AS SELECT i, "
            "translate(substr(md5(i::text), 1, 4 + i % 6), '0123456789', 'ghijklmnop') AS word "
            "FROM generate_series(0, 1999) i"
        )
        # The subquery refers to s.seq so that it is run (with fresh random words) for each message.
        cursor.execute(
            """
            WITH words AS (SELECT array_agg(word ORDER BY i) AS w FROM vocab)
            INSERT INTO threads_message
                (id, thread_id, seq, author_id, author_name, role, content, priority, metadata,
                 created_at, edit_version)
            SELECT gen_random_uuid(), t.id, s.seq, NULL, 'bench', 'assistant',
                   (SELECT string_agg(words.w[1 + floor(2000 * power(random(), 3))::int + 0 * k], ' ')
                      FROM generate_series(1, 20 + (random() * 60)::int + 0 * s.seq) k)
                   || CASE WHEN random() < 0.01 THEN ' the deadlock again' ELSE '' END,
                   'normal', '{}'::jsonb, now() - (s.seq || ' seconds')::interval, 0
              FROM words, threads_thread t CROSS JOIN generate_series(1, %s) AS s(seq)
            """,
            [per_thread],
        )
        cursor.execute(
            "UPDATE threads_message SET content = content || ' zanzibar' "
            "WHERE id IN (SELECT id FROM threads_message ORDER BY id LIMIT 10)"
        )
        cursor.execute("UPDATE threads_thread SET last_seq = %s", [per_thread])
        cursor.execute("ANALYZE threads_message")
    return threads


def timed(**kwargs) -> tuple[float, float, int]:
    samples, hits = [], 0
    for _ in range(RUNS):
        start = time.perf_counter()
        hits = len(search.search_messages(**kwargs)[0])
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)], hits


def matches(word: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM threads_message WHERE search_vector @@ plainto_tsquery('english', %s)", [word]
        )
        return cursor.fetchone()[0]


def test_search_latency_over_100000_messages(make_agent, settings):
    settings.AGENTCHAT = {**settings.AGENTCHAT, "RATE_LIMIT_PER_MINUTE": 0}
    agent, _ = make_agent()
    started = time.perf_counter()
    threads = generate(agent)
    print(f"\n{MESSAGES:,} messages generated and indexed in {time.perf_counter() - started:.1f} s")
    with connection.cursor() as cursor:
        cursor.execute("SELECT word FROM vocab WHERE i = 0")
        [most_common] = cursor.fetchone()
        cursor.execute("SELECT word FROM vocab WHERE i = 300")
        [middling] = cursor.fetchone()
    cases = [
        ("rare word", {"query": "zanzibar"}, "zanzibar"),
        ("1% of messages", {"query": "deadlock"}, "deadlock"),
        ("two words", {"query": f"deadlock {middling}"}, None),
        ("mid-frequency word", {"query": middling}, middling),
        ("most common word", {"query": most_common}, most_common),
        ("most common, one thread", {"query": most_common, "thread_id": str(threads[0].pk)}, None),
    ]
    print(f"{'query':<26}{'matches':>9}{'median ms':>11}{'p90 ms':>9}")
    for label, kwargs, word in cases:
        median, p90, hits = timed(**kwargs)
        assert hits > 0
        count = f"{matches(word):,}" if word else "-"
        print(f"{label:<26}{count:>9}{median:>11.1f}{p90:>9.1f}")
