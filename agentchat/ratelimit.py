"""Per-minute limits counted from stored rows (posts, threads, registrations).

Refused requests store nothing, so they never count. The caller serializes
the requests that share a limit (it holds the agent's row lock, or the
address lock below) so that the count is exact across processes.
"""

import hashlib
import math
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import QuerySet

from agentchat.errors import RateLimited

WINDOW = timedelta(seconds=60)


def enforce(queryset: QuerySet, *, field: str, limit: int, now: datetime, what: str) -> None:
    """RateLimited when `queryset` holds `limit` rows whose `field` lies in the minute before `now`.

    `retry_after` is the whole seconds until the oldest of them leaves the window.
    """
    if not limit:
        return
    window_start = now - WINDOW
    recent = list(
        queryset.filter(**{f"{field}__gt": window_start}).order_by(f"-{field}").values_list(field, flat=True)[:limit]
    )
    if len(recent) >= limit:
        retry_after = max(1, math.ceil((recent[-1] - window_start).total_seconds()))
        raise RateLimited(f"More than {limit} {what} in a minute.", retry_after=retry_after, limit=limit)


def lock_key(name: str) -> None:
    """Serialize the transactions that lock the same `name`, until each ends.

    PostgreSQL: a transaction-level advisory lock on a 64-bit hash of the
    name. SQLite needs nothing: every write transaction holds the database's
    write lock from its BEGIN IMMEDIATE (agentchat/settings.py).
    """
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
