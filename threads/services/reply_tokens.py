"""
Reply tokens: permission to post once in a thread, having read up to a seq.

The one home of the lease and voiding rules. A token is issued by
`issue_reply_tokens` (for one agent or for every agent a wake-up ends the wait
of), is checked and consumed by `redeem_reply_token` inside a post's
transaction, and is voided when the agent falls behind (SeqMismatch) or a
newer msg_wait supersedes it. Only the SHA-256 of a token is stored.
"""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from agentchat import tokens
from agentchat.errors import ReplyTokenExpired, ReplyTokenInvalid, ReplyTokenReplay
from agents.serializers import iso
from threads.models import ReplyToken


@dataclass
class SyncContext:
    """What an agent needs for its next post: the seq it has read and a token."""

    current_seq: int
    reply_token: str
    expires_at: datetime
    max_new_messages: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "current_seq": self.current_seq,
            "reply_token": self.reply_token,
            "reply_window": {"expires_at": iso(self.expires_at), "max_new_messages": self.max_new_messages},
        }


@dataclass(frozen=True)
class Grant:
    """One token to issue: this agent has read this thread up to `read_seq`."""

    thread_id: Any
    agent_id: Any
    read_seq: int


def issue_reply_token(
    *, thread_id: Any, agent_id: Any, read_seq: int, void_older: bool = False, now: datetime | None = None
) -> SyncContext:
    """Issue one token (see `issue_reply_tokens`)."""
    [context] = issue_reply_tokens([Grant(thread_id, agent_id, read_seq)], void_older=void_older, now=now)
    return context


@transaction.atomic(savepoint=False)  # inside a post's transaction: no savepoint round trips
def issue_reply_tokens(grants: list[Grant], *, void_older: bool, now: datetime | None = None) -> list[SyncContext]:
    """Issue a token per grant, in order; with `void_older`, first void the agents' other live tokens.

    msg_wait and SeqMismatch void (the agent's newest read supersedes what it
    held); a post's chain token, bus_connect and thread_create do not.
    """
    now = now or timezone.now()
    if not grants:
        return []
    if void_older:
        by_thread: dict[Any, set] = {}
        for grant in grants:
            by_thread.setdefault(grant.thread_id, set()).add(grant.agent_id)
        for thread_id, agent_ids in by_thread.items():
            void_reply_tokens(thread_id=thread_id, agent_ids=agent_ids, now=now)
    conf = settings.AGENTCHAT
    expires_at = now + timedelta(seconds=conf["REPLY_TOKEN_LEASE_SECONDS"])
    contexts, rows = [], []
    for grant in grants:
        token = tokens.new_token()
        rows.append((tokens.hash_token(token), grant.thread_id, grant.agent_id, grant.read_seq))
        contexts.append(
            SyncContext(
                current_seq=grant.read_seq,
                reply_token=token,
                expires_at=expires_at,
                max_new_messages=conf["SEQ_TOLERANCE"],
            )
        )
    _insert_tokens(rows, created_at=now, expires_at=expires_at)
    return contexts


def void_reply_tokens(*, thread_id: Any, agent_ids: set | list, now: datetime) -> None:
    """Void the live tokens of these agents in a thread (one UPDATE)."""
    ReplyToken.objects.filter(
        thread_id=thread_id, agent_id__in=agent_ids, consumed_at__isnull=True, voided_at__isnull=True
    ).update(voided_at=now)


def redeem_reply_token(*, token: str, thread_id: Any, agent_id: Any, now: datetime) -> ReplyToken:
    """Check a presented token for a post (inside the post's transaction); return it, unconsumed yet.

    Raises ReplyTokenInvalid (unknown, another agent's or thread's, voided),
    ReplyTokenReplay (already consumed) or ReplyTokenExpired (past its lease).
    """
    row = ReplyToken.objects.filter(token_hash=tokens.hash_token(token)).first()
    if row is None or row.thread_id != thread_id or row.agent_id != agent_id or row.voided_at:
        raise ReplyTokenInvalid("This reply token is not valid for this agent and thread.")
    if row.consumed_at is not None:
        raise ReplyTokenReplay("This reply token was already used; use the one your last post returned.")
    if row.expires_at <= now:
        raise ReplyTokenExpired("This reply token's lease ran out; call msg_wait for a fresh one.")
    return row


def use_reply_token(*, token: str, thread_id: Any, agent_id: Any, now: datetime) -> None:
    """Consume a presented token for a post, in one conditional UPDATE; the token errors when it cannot be used.

    The success path (a live token of this agent and thread) costs one
    statement; only a refused token costs a second one, to say why. The
    caller's transaction undoes the consumption if the post is refused later.
    """
    used = ReplyToken.objects.filter(
        token_hash=tokens.hash_token(token),
        thread_id=thread_id,
        agent_id=agent_id,
        consumed_at__isnull=True,
        voided_at__isnull=True,
        expires_at__gt=now,
    ).update(consumed_at=now)
    if not used:
        redeem_reply_token(token=token, thread_id=thread_id, agent_id=agent_id, now=now)  # raises the right error
        raise ReplyTokenInvalid("This reply token is not valid for this agent and thread.")  # pragma: no cover


def purge_reply_tokens(*, dry_run: bool = False, now: datetime | None = None) -> int:
    """Delete reply tokens that can never be used again: consumed, voided or expired."""
    now = now or timezone.now()
    dead = ReplyToken.objects.filter(Q(consumed_at__isnull=False) | Q(voided_at__isnull=False) | Q(expires_at__lte=now))
    if dry_run:
        return dead.count()
    deleted, _ = dead.delete()
    return deleted


def _insert_tokens(rows: list[tuple[str, Any, Any, int]], *, created_at: datetime, expires_at: datetime) -> None:
    """Insert (token_hash, thread_id, agent_id, issued_seq) rows as multi-row INSERTs.

    Equivalent to ReplyToken.objects.bulk_create, without building a model
    instance and compiling parameters per row: for the 1,000 tokens of a
    wake-up that is most of the batch's time.
    """
    fields = {f.name: f for f in ReplyToken._meta.concrete_fields}
    columns = ["token_hash", "thread", "agent", "issued_seq", "created_at", "expires_at"]
    # Each distinct value is prepared once (a wake-up's tokens share their thread).
    prepare = [functools.lru_cache(maxsize=None)(functools.partial(_prep, fields[name])) for name in columns[1:3]]
    moments = [
        fields["created_at"].get_db_prep_value(created_at, connection),
        fields["expires_at"].get_db_prep_value(expires_at, connection),
    ]
    sql_columns = ", ".join(connection.ops.quote_name(fields[name].column) for name in columns)
    table = connection.ops.quote_name(ReplyToken._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 1000):  # 6,000 parameters a statement at most
            chunk = rows[start : start + 1000]
            params = []
            for token_hash, thread_id, agent_id, issued_seq in chunk:
                params.extend((token_hash, prepare[0](thread_id), prepare[1](agent_id), issued_seq, *moments))
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(f"INSERT INTO {table} ({sql_columns}) VALUES {values}", params)


def _prep(field: Any, value: Any) -> Any:
    return field.get_db_prep_value(value, connection)
