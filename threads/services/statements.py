"""
The statements of a post, written out in SQL once instead of compiled by the ORM for every post.

A post is the bus's hottest write. Each function here names the ORM call it
stands for; they run on SQLite and PostgreSQL alike, with values prepared by
the model fields themselves (`get_db_prep_value`/`get_db_prep_save`), so
what they store is what the ORM would store.
"""

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


def lock_thread_for_post(thread_id: str, *, author: Agent, client_msg_id: str | None) -> Thread:
    """The thread's row, locked, with `replayed_id`: the author's stored message with this client_msg_id, if any.

    Equivalent: Thread.objects.select_for_update(no_key=True).annotate(replayed_id=Subquery(
    Message.objects.filter(author=author, client_msg_id=client_msg_id).values("pk")[:1])).get(pk=thread_id)
    """
    try:
        pk = _pk(Thread, thread_id)
    except ValueError:
        raise NotFound("thread") from None
    columns = ", ".join(_q(f.column) for f in Thread._meta.concrete_fields)
    replay, params = "NULL", []
    if client_msg_id is not None:
        replay = (
            f"(SELECT {_q('id')} FROM {_q(Message._meta.db_table)} "
            f"WHERE {_q('author_id')} = %s AND {_q('client_msg_id')} = %s LIMIT 1)"
        )
        params = [_pk(Agent, author.pk), client_msg_id]
    sql = (
        f"SELECT {columns}, {replay} AS {_q('replayed_id')} FROM {_q(Thread._meta.db_table)} "
        f"WHERE {_q('id')} = %s{_lock_clause()}"
    )
    rows = list(Thread.objects.raw(sql, [*params, pk]))
    if not rows:
        raise NotFound("thread")
    return rows[0]


def lock_agent_for_post(agent: Agent, *, thread: Thread, claims: Claims | None) -> tuple[bool, int | None]:
    """Lock the agent's row (InvalidCredentials if revoked); return (token used?, the agent's voiding serial here).

    Equivalent: agents.services.lock_agent(agent, token_used=Exists(Message.objects.filter(
    token_nonce=claims.nonce)), tokens_void_before=Subquery(Participant.objects.filter(thread=thread,
    agent=agent).values("tokens_void_before")[:1])). The statement starts once the thread's lock is
    granted, so it sees every post of the thread committed before.
    """
    agent_pk = _pk(Agent, agent.pk)
    used, void_before, params = "0", "NULL", []
    if claims is not None:
        used = f"EXISTS(SELECT 1 FROM {_q(Message._meta.db_table)} WHERE {_q('token_nonce')} = %s)"
        void_before = (
            f"(SELECT {_q('tokens_void_before')} FROM {_q(Participant._meta.db_table)} "
            f"WHERE {_q('thread_id')} = %s AND {_q('agent_id')} = %s)"
        )
        params = [claims.nonce, _pk(Thread, thread.pk), agent_pk]
    sql = (
        f"SELECT {_q('credential_generation')}, {used}, {void_before} FROM {_q(Agent._meta.db_table)} "
        f"WHERE {_q('id')} = %s AND {_q('unregistered_at')} IS NULL{_lock_clause()}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, agent_pk])
        row = cursor.fetchone()
    if row is None or row[0] != agent.credential_generation:
        raise InvalidCredentials(REVOKED)
    return bool(row[1]), row[2]


def save_thread_seq(thread: Thread) -> None:
    """Equivalent: thread.save(update_fields=["last_seq", "updated_at"])."""
    updated_at = Thread._meta.get_field("updated_at").get_db_prep_value(thread.updated_at, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_q(Thread._meta.db_table)} SET {_q('last_seq')} = %s, {_q('updated_at')} = %s "
            f"WHERE {_q('id')} = %s",
            [thread.last_seq, updated_at, _pk(Thread, thread.pk)],
        )


def insert_message(message: Message) -> None:
    """Equivalent: message.save(force_insert=True), for a message built with all its values."""
    fields = Message._meta.concrete_fields
    columns = ", ".join(_q(f.column) for f in fields)
    values = [f.get_db_prep_save(getattr(message, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_q(Message._meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})",
            values,
        )
    message._state.adding = False
    message._state.db = connection.alias
