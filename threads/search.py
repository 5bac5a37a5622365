"""
Full-text search of messages (msg_search, and the admin's message search).

One set of rules, two engines. The rules live here once: which words a query
has (`search_terms`), which messages a search may see (`_scope`: the thread,
and never human-only content for agents), the ranking order and the cursor.
Only the matching, ranking and snippets are engine-specific:

- PostgreSQL: a stored, generated `tsvector` column on the messages table
  (`to_tsvector('english', content)`) with a GIN index, both created by the
  migration. PostgreSQL computes the column in the INSERT of a post and the
  UPDATE of an edit, so the index is current as soon as they commit.
- SQLite: an FTS5 table (`threads_message_fts`), written by `index_message`,
  which `append_message` and `edit_message` call in their transactions.

Words are runs of letters and digits; a query matches the messages that hold
every one of them (PostgreSQL also matches other forms of a word: "deadlocks"
finds "deadlock").
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from uuid import UUID

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVectorField
from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from agentchat.errors import BadRequest
from threads.models import HUMAN_ONLY, Message
from threads.selectors import get_thread

# The text search configuration of the generated column; a query must use the same one.
PG_CONFIG = "english"
PG_VECTOR_COLUMN = "search_vector"
PG_INDEX = "message_search_vector_gin"
SQLITE_FTS_TABLE = "threads_message_fts"

# Snippets mark the words found like this (the rest of the snippet is the message's text as is).
MARK_START, MARK_END = "<mark>", "</mark>"
ELLIPSIS = "…"
SNIPPET_WORDS = 24

# A query with more words than this is cut to its first MAX_TERMS words.
MAX_TERMS = 32
# Words that are operators in the engines' query languages: never searched for.
OPERATORS = {"AND", "OR", "NOT", "NEAR"}
_WORD = re.compile(r"[^\W_]+")


def search_terms(query: str) -> list[str]:
    """The words of a query; BadRequest when it has none (empty, or only punctuation and operators)."""
    terms = [word for word in _WORD.findall(query) if word not in OPERATORS]
    if not terms:
        raise BadRequest("query has no words to search for.", field="query")
    return terms[:MAX_TERMS]


@dataclass
class Hit:
    message: Message
    snippet: str
    # Higher is better; comparable only within one search (each engine scores its own way).
    rank: float


# --- keeping the index current ---------------------------------------------------


def index_message(message: Message, *, created: bool) -> None:
    """Index a message's current content; called in the transaction that stores it (post or edit)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            if not created:
                cursor.execute(f"DELETE FROM {SQLITE_FTS_TABLE} WHERE msg_id = %s", [message.pk.hex])
            cursor.execute(
                f"INSERT INTO {SQLITE_FTS_TABLE} (msg_id, content) VALUES (%s, %s)",
                [message.pk.hex, message.content],
            )
    # PostgreSQL: the generated column is computed by the same INSERT or UPDATE; nothing to do.


# --- searching -------------------------------------------------------------------


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["offset"]
    except (ValueError, TypeError, KeyError, binascii.Error, json.JSONDecodeError):
        offset = None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise BadRequest("cursor is not a cursor returned by msg_search.", field="cursor")
    return offset


def _scope(*, thread_id: UUID | None, include_human_only: bool) -> QuerySet:
    """The messages a search may return."""
    messages = Message.objects.order_by()
    if thread_id is not None:
        messages = messages.filter(thread_id=thread_id)
    if not include_human_only:
        messages = messages.exclude(HUMAN_ONLY)
    return messages


def search_messages(
    *,
    query: str,
    thread_id: str | UUID | None = None,
    limit: int = 20,
    cursor: str | None = None,
    include_human_only: bool = False,
) -> tuple[list[Hit], str | None]:
    """Messages matching every word of `query`, best first, and the cursor of the next page (or None).

    Agents' searches never see human-only messages (`include_human_only` is
    for the admin). An unknown `thread_id` is NotFound.

    Ties in rank go newest first. The cursor is a position in that order: a
    message posted or edited between two pages can shift the later pages.
    """
    terms = search_terms(query)
    offset = decode_cursor(cursor) if cursor is not None else 0
    if thread_id is not None:
        thread_id = get_thread(thread_id=thread_id).pk
    scope = _scope(thread_id=thread_id, include_human_only=include_human_only)
    if connection.vendor == "postgresql":
        hits = _search_postgres(terms, scope, offset=offset, count=limit + 1)
    elif connection.vendor == "sqlite":
        hits = _search_sqlite(terms, scope, offset=offset, count=limit + 1)
    else:
        raise NotImplementedError(f"Message search does not support {connection.vendor}.")
    next_cursor = encode_cursor(offset + limit) if len(hits) > limit else None
    return hits[:limit], next_cursor


def _search_postgres(terms: list[str], scope: QuerySet, *, offset: int, count: int) -> list[Hit]:
    # The column is not a model field (it exists on PostgreSQL only), so it is named here.
    vector = RawSQL(f'"{Message._meta.db_table}"."{PG_VECTOR_COLUMN}"', [], output_field=SearchVectorField())
    # plainto_tsquery: the words joined by AND, with no operator syntax to get wrong.
    query = SearchQuery(" ".join(terms), config=PG_CONFIG, search_type="plain")
    page = list(
        scope.annotate(document=vector, rank=SearchRank(vector, query, normalization=1))
        .filter(document=query)
        .order_by("-rank", "-created_at", "-pk")[offset : offset + count]
    )
    # Headlines re-read each document: compute them for this page only.
    snippets = dict(
        Message.objects.filter(pk__in=[message.pk for message in page])
        .annotate(
            snippet=SearchHeadline(
                "content",
                query,
                config=PG_CONFIG,
                start_sel=MARK_START,
                stop_sel=MARK_END,
                max_words=SNIPPET_WORDS,
                min_words=SNIPPET_WORDS // 2,
                max_fragments=2,
                fragment_delimiter=f" {ELLIPSIS} ",
            )
        )
        .values_list("pk", "snippet")
    )
    return [Hit(message=message, snippet=snippets[message.pk], rank=message.rank) for message in page]


def _search_sqlite(terms: list[str], scope: QuerySet, *, offset: int, count: int) -> list[Hit]:
    # Each word as an FTS5 string, so nothing in it is read as query syntax; juxtaposed strings are ANDed.
    match = " ".join('"{}"'.format(term.replace('"', '""')) for term in terms)
    scope_sql, scope_params = scope.values("pk").query.sql_with_params()
    table = Message._meta.db_table
    sql = f"""
        SELECT {SQLITE_FTS_TABLE}.msg_id,
               -bm25({SQLITE_FTS_TABLE}) AS score,
               snippet({SQLITE_FTS_TABLE}, 1, %s, %s, %s, %s)
        FROM {SQLITE_FTS_TABLE} JOIN {table} ON {table}.id = {SQLITE_FTS_TABLE}.msg_id
        WHERE {SQLITE_FTS_TABLE} MATCH %s AND {table}.id IN ({scope_sql})
        ORDER BY score DESC, {table}.created_at DESC, {table}.id DESC
        LIMIT %s OFFSET %s
    """
    params = [MARK_START, MARK_END, ELLIPSIS, SNIPPET_WORDS, match, *scope_params, count, offset]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    messages = Message.objects.in_bulk([UUID(hex=row[0]) for row in rows])
    return [Hit(message=messages[UUID(hex=msg_id)], snippet=snippet, rank=rank) for msg_id, rank, snippet in rows]
