"""
Cursors: how far each agent got in each thread (`threads.Participant`).

The one place cursors are written. Every caller hands `advance_cursors` what
happened (`Advance`s: messages delivered, a seq the agent showed it read, a
post) and it writes them all in ONE multi-row upsert, whatever their number:

- a post writes its author's `last_post_seq` and `seen_seq` (its
  `expected_last_seq`) inside the post's transaction;
- a batch of msg_wait looks (threads.services.waits) writes the cursors of
  every agent in the batch at once: one statement per batch, never one per
  waiting agent;
- msg_list, msg_get, bus_connect, thread_create and a SeqMismatch write one
  statement for their request.

The same upsert moves `tokens_void_before`, the serial below which the
agent's reply tokens for the thread are void (msg_wait's end, a SeqMismatch).

Cursors only move forward: the upsert keeps the larger of the stored and the
new seq (`CASE WHEN excluded.x > t.x`, portable across SQLite and
PostgreSQL), with the time of the move.
"""

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection
from django.utils import timezone

from threads.models import Message, Participant, addressees

# Up to this many rows an upsert lists its values; more go as one JSON parameter (see `upserts`).
_VALUES_ROWS = 10


@dataclass(frozen=True)
class Advance:
    """What moved for one agent in one thread."""

    thread_id: Any
    agent_id: Any
    delivered_seq: int = 0
    seen_seq: int = 0
    # The first message addressed to the agent among those delivered now.
    owed_seq: int | None = None
    last_post_seq: int | None = None
    # Void the agent's reply tokens issued before this serial (threads.services.reply_tokens).
    void_before: int = 0

    def merge(self, other: "Advance") -> "Advance":
        owed = [s for s in (self.owed_seq, other.owed_seq) if s is not None]
        posts = [s for s in (self.last_post_seq, other.last_post_seq) if s is not None]
        return replace(
            self,
            delivered_seq=max(self.delivered_seq, other.delivered_seq),
            seen_seq=max(self.seen_seq, other.seen_seq),
            owed_seq=min(owed) if owed else None,
            last_post_seq=max(posts) if posts else None,
            void_before=max(self.void_before, other.void_before),
        )


def delivery(
    *, thread_id: Any, agent_id: Any, messages: list[Message | dict], seen_seq: int = 0, void_before: int = 0
) -> Advance:
    """The Advance of handing `messages` (of one thread; models, or dicts as agents see them) to an agent."""
    me = str(agent_id)
    owed = None
    newest = 0
    for message in messages:
        if isinstance(message, dict):
            seq, author, metadata = message["seq"], message["author_id"], message["metadata"]
        else:
            seq, author, metadata = message.seq, message.author_id, message.metadata
        newest = max(newest, seq)
        if str(author) == me:
            owed = None  # its own post answers what came before
        elif owed is None and me in addressees(metadata):
            owed = seq
    return Advance(
        thread_id=thread_id,
        agent_id=agent_id,
        delivered_seq=newest,
        seen_seq=seen_seq,
        owed_seq=owed,
        void_before=void_before,
    )


def _update_clause() -> str:
    t = connection.ops.quote_name(Participant._meta.db_table)
    # A delivery starts the clock of the oldest message addressed to the agent
    # that it has not answered, unless one runs already. A post answers it
    # (last_post_seq passes owed_seq); the pair stays, as the exact delivery
    # time of that message, until the next one addressed to the agent.
    answered = f"({t}.owed_seq IS NULL OR {t}.owed_seq <= COALESCE({t}.last_post_seq, 0))"
    newly_owed = f"{answered} AND excluded.owed_seq > COALESCE({t}.last_post_seq, 0)"
    return ", ".join(
        [
            f"delivered_at = CASE WHEN excluded.delivered_seq > {t}.delivered_seq "
            f"THEN excluded.delivered_at ELSE {t}.delivered_at END",
            f"delivered_seq = CASE WHEN excluded.delivered_seq > {t}.delivered_seq "
            f"THEN excluded.delivered_seq ELSE {t}.delivered_seq END",
            f"seen_at = CASE WHEN excluded.seen_seq > {t}.seen_seq THEN excluded.seen_at ELSE {t}.seen_at END",
            f"seen_seq = CASE WHEN excluded.seen_seq > {t}.seen_seq THEN excluded.seen_seq ELSE {t}.seen_seq END",
            f"last_post_at = CASE WHEN excluded.last_post_seq > COALESCE({t}.last_post_seq, 0) "
            f"THEN excluded.last_post_at ELSE {t}.last_post_at END",
            f"last_post_seq = CASE WHEN excluded.last_post_seq > COALESCE({t}.last_post_seq, 0) "
            f"THEN excluded.last_post_seq ELSE {t}.last_post_seq END",
            f"owed_since = CASE WHEN {newly_owed} THEN excluded.owed_since ELSE {t}.owed_since END",
            f"owed_seq = CASE WHEN {newly_owed} THEN excluded.owed_seq ELSE {t}.owed_seq END",
            f"tokens_void_before = CASE WHEN excluded.tokens_void_before > {t}.tokens_void_before "
            f"THEN excluded.tokens_void_before ELSE {t}.tokens_void_before END",
        ]
    )


COLUMNS = [
    "thread_id",
    "agent_id",
    "delivered_seq",
    "delivered_at",
    "seen_seq",
    "seen_at",
    "last_post_seq",
    "last_post_at",
    "owed_seq",
    "owed_since",
    "tokens_void_before",
    "joined_at",
]


def advance_cursors(advances: list[Advance], *, now: datetime | None = None) -> None:
    """Move these cursors forward (creating the participants), in one statement."""
    with connection.cursor() as cursor:
        for sql, params in upserts(advances, now=now or timezone.now()):
            cursor.execute(sql, params)


def upserts(advances: list[Advance], *, now: datetime) -> list[tuple[str, list]]:
    """The statement (SQL, parameters) of `advance_cursors`: one, whatever the number of agents.

    A few rows go as VALUES, a placeholder per value. More rows travel as
    ONE parameter, a JSON array of rows, which the database unpacks
    (`_rows_from_json`): a wake-up of 1,000 agents with a placeholder per
    value would spend more time having its 12,000 values bound, client side,
    than the database spends on the upsert; a post's single row is faster
    as VALUES.
    """
    if not advances:
        return []
    merged: dict[tuple[str, str], Advance] = {}
    for advance in advances:
        key = (str(advance.thread_id), str(advance.agent_id))
        merged[key] = merged[key].merge(advance) if key in merged else advance
    fields = {f.column: f for f in Participant._meta.concrete_fields}
    as_json = len(merged) > _VALUES_ROWS
    moment = fields["joined_at"].get_db_prep_value(now, connection)
    if as_json and isinstance(moment, datetime):
        moment = moment.isoformat()  # text the database casts back
    # UUIDs as the database stores them (UUIDField.get_db_prep_value, as text): native, or 32 hex digits.
    native = connection.features.has_native_uuid_field
    as_text: dict[Any, str] = {}

    def uuid_text(value: Any) -> str:
        if value not in as_text:
            uuid = value if isinstance(value, UUID) else UUID(str(value))
            as_text[value] = str(uuid) if native else uuid.hex
        return as_text[value]

    rows = []
    # In key order: concurrent batches lock the rows they share in the same order.
    for _key, a in sorted(merged.items()):
        rows.append(
            [
                uuid_text(a.thread_id),
                uuid_text(a.agent_id),
                a.delivered_seq,
                moment if a.delivered_seq else None,
                a.seen_seq,
                moment if a.seen_seq else None,
                a.last_post_seq,
                moment if a.last_post_seq is not None else None,
                a.owed_seq,
                moment if a.owed_seq is not None else None,
                a.void_before,
                moment,
            ]
        )
    table = connection.ops.quote_name(Participant._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in COLUMNS)
    if as_json:
        source, params = _rows_from_json(fields), [json.dumps(rows, separators=(",", ":"))]
    else:
        placeholders = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
        source, params = f"VALUES {', '.join([placeholders] * len(rows))}", [v for row in rows for v in row]
    sql = f"INSERT INTO {table} ({columns}) {source} ON CONFLICT (agent_id, thread_id) DO UPDATE SET {_update_clause()}"
    return [(sql, params)]


def _rows_from_json(fields: dict) -> str:
    """A SELECT of the COLUMNS from one JSON parameter holding an array of rows (arrays, in COLUMNS order)."""
    if connection.vendor == "postgresql":
        values = ", ".join(f"(r->>{n})::{fields[c].db_type(connection)}" for n, c in enumerate(COLUMNS))
        return f"SELECT {values} FROM jsonb_array_elements(%s::jsonb) AS r"
    # SQLite: "WHERE true" tells its parser that ON CONFLICT belongs to the INSERT.
    values = ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(COLUMNS)))
    return f"SELECT {values} FROM json_each(%s) WHERE true"
