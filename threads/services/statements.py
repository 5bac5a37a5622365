"""
The statements of a post, written out in SQL once instead of compiled by the ORM for every post.

A post is the bus's hottest write. Each function here names the ORM call it
stands for; they run on SQLite and PostgreSQL alike, with values prepared and
converted by the model fields themselves (`get_db_prep_value`,
`get_db_prep_save`, the fields' database converters), so what they store and
read is what the ORM would. The SQL text is built once per database vendor.
"""

import functools
from typing import Any
from uuid import UUID

from django.db import connection

from agentchat.errors import InvalidCredentials, NotFound
from agents.models import Agent
from agents.services.credentials import REVOKED
from threads.models import Message, Participant, Thread
from threads.services.reply_tokens import Claims


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _lock_clause() -> str:
    # NO KEY UPDATE (PostgreSQL): see threads.services.locks and agents.services.credentials.
    if connection.features.has_select_for_no_key_update:
        return " FOR NO KEY UPDATE"
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def _pk(model: type, value: Any) -> Any:
    return model._meta.pk.get_db_prep_value(value if isinstance(value, UUID) else UUID(str(value)), connection)


@functools.lru_cache(maxsize=8)
def _lock_thread_sql(vendor: str, with_replay: bool) -> str:
    columns = ", ".join(_q(f.column) for f in Thread._meta.concrete_fields)
    replay = "NULL"
    if with_replay:
        replay = (
            f"(SELECT {_q('id')} FROM {_q(Message._meta.db_table)} "
            f"WHERE {_q('author_id')} = %s AND {_q('client_msg_id')} = %s LIMIT 1)"
        )
    return f"SELECT {columns}, {replay} FROM {_q(Thread._meta.db_table)} WHERE {_q('id')} = %s{_lock_clause()}"


def lock_thread_for_post(thread_id: str, *, author: Agent, client_msg_id: str | None) -> Thread:
    """The thread's row, locked, with `replayed_id`: the author's stored message with this client_msg_id, if any.

    Equivalent: Thread.objects.select_for_update(no_key=True).annotate(replayed_id=Subquery(
    Message.objects.filter(author=author, client_msg_id=client_msg_id).values("pk")[:1])).get(pk=thread_id)
    """
    try:
        pk = _pk(Thread, thread_id)
    except ValueError:
        raise NotFound("thread") from None
    params = [] if client_msg_id is None else [_pk(Agent, author.pk), client_msg_id]
    with connection.cursor() as cursor:
        cursor.execute(_lock_thread_sql(connection.vendor, client_msg_id is not None), [*params, pk])
        row = cursor.fetchone()
    if row is None:
        raise NotFound("thread")
    thread = _from_row(Thread, row[:-1])
    thread.replayed_id = row[-1]
    return thread


def _from_row(model: type, row: tuple) -> Any:
    """A model instance from a row of all its concrete columns, converted as the ORM converts them."""
    fields = model._meta.concrete_fields
    values = []
    for (field, converters), value in zip(_converters(model, connection.vendor), row):
        for converter in converters:
            value = converter(value, field, connection)
        values.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], values)


@functools.lru_cache(maxsize=8)
def _converters(model: type, vendor: str) -> list[tuple[Any, list]]:
    columns = [f.get_col(model._meta.db_table) for f in model._meta.concrete_fields]
    return [(c, connection.ops.get_db_converters(c) + c.get_db_converters(connection)) for c in columns]


@functools.lru_cache(maxsize=8)
def _lock_agent_sql(vendor: str, with_token: bool) -> str:
    used, void_before = "0", "NULL"
    if with_token:
        used = f"EXISTS(SELECT 1 FROM {_q(Message._meta.db_table)} WHERE {_q('token_nonce')} = %s)"
        void_before = (
            f"(SELECT {_q('tokens_void_before')} FROM {_q(Participant._meta.db_table)} "
            f"WHERE {_q('thread_id')} = %s AND {_q('agent_id')} = %s)"
        )
    return (
        f"SELECT {_q('credential_generation')}, {used}, {void_before} FROM {_q(Agent._meta.db_table)} "
        f"WHERE {_q('id')} = %s AND {_q('unregistered_at')} IS NULL{_lock_clause()}"
    )


def lock_agent_for_post(agent: Agent, *, thread: Thread, claims: Claims | None) -> tuple[bool, int | None]:
    """Lock the agent's row (InvalidCredentials if revoked); return (token used?, the agent's voiding serial here).

    Equivalent: agents.services.lock_agent(agent), its query annotated with token_used=Exists(
    Message.objects.filter(token_nonce=claims.nonce)) and tokens_void_before=Subquery(
    Participant.objects.filter(thread=thread, agent=agent).values("tokens_void_before")[:1]). The
    statement starts once the thread's lock is granted, so it sees every post of the thread
    committed before.
    """
    agent_pk = _pk(Agent, agent.pk)
    params = [] if claims is None else [claims.nonce, _pk(Thread, thread.pk), agent_pk]
    with connection.cursor() as cursor:
        cursor.execute(_lock_agent_sql(connection.vendor, claims is not None), [*params, agent_pk])
        row = cursor.fetchone()
    if row is None or row[0] != agent.credential_generation:
        raise InvalidCredentials(REVOKED)
    return bool(row[1]), row[2]


@functools.lru_cache(maxsize=8)
def _thread_seq_sql(vendor: str) -> str:
    return (
        f"UPDATE {_q(Thread._meta.db_table)} SET {_q('last_seq')} = %s, {_q('updated_at')} = %s WHERE {_q('id')} = %s"
    )


@functools.lru_cache(maxsize=8)
def _message_insert_sql(vendor: str) -> str:
    fields = Message._meta.concrete_fields
    columns = ", ".join(_q(f.column) for f in fields)
    return f"INSERT INTO {_q(Message._meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"


def store_message(thread: Thread, message: Message, cursors: list[tuple[str, list]] = ()) -> None:
    """Store the thread's new last_seq and the message, then run `cursors` (statements: SQL and parameters).

    Equivalent: thread.save(update_fields=["last_seq", "updated_at"]);
    message.save(force_insert=True). On PostgreSQL the writes go as one
    statement (data-modifying WITH clauses; none reads what another writes):
    one round trip instead of three. Elsewhere, one statement each.
    """
    updated_at = Thread._meta.get_field("updated_at").get_db_prep_value(thread.updated_at, connection)
    writes = [
        (_thread_seq_sql(connection.vendor), [thread.last_seq, updated_at, _pk(Thread, thread.pk)]),
        (
            _message_insert_sql(connection.vendor),
            [f.get_db_prep_save(getattr(message, f.attname), connection) for f in Message._meta.concrete_fields],
        ),
        *cursors,
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            *first, (last_sql, last_params) = writes
            withs = ", ".join(f"write_{n} AS ({sql})" for n, (sql, _params) in enumerate(first))
            params = [value for _sql, values in first for value in values]
            cursor.execute(f"WITH {withs} {last_sql}", [*params, *last_params])
        else:
            for sql, params in writes:
                cursor.execute(sql, params)
    message._state.adding = False
    message._state.db = connection.alias
