"""Helpers for tests that call the domain layer (threads.services) directly."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from threads import services
from threads.models import Message, Participant, Thread
from threads.services import reply_tokens

# One sample per secret pattern the content filter knows.
SECRETS = {
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_" + "a1B2c3D4e5" * 4,
    "gitlab_token": "glpat-" + "xY9_zW8-vU7tS6rQ5pO4",
    "openai_api_key": "sk-proj-" + "Ab3" * 12,
}


def post(agent, thread, sync, content="hello", **kwargs):
    """Post with the sync context the agent holds, unless a test overrides a field."""
    kwargs.setdefault("expected_last_seq", sync.current_seq)
    kwargs.setdefault("reply_token", sync.reply_token)
    return services.post_message(agent=agent, thread_id=str(thread.pk), content=content, **kwargs)


def chain_posts(agent, thread, sync, metadatas):
    """One post per metadata, each with the previous post's chain token; the last chain token."""
    for metadata in metadatas:
        _, sync = post(agent, thread, sync, metadata=metadata)
    return sync


def join(agent, thread, read_seq=None):
    """A sync context for `agent`, as msg_wait would end with it."""
    if read_seq is None:
        read_seq = Thread.objects.get(pk=thread.pk).last_seq
    return services.finish_wait(agent=agent, thread_id=str(thread.pk), read_seq=read_seq)


def stored_state(thread):
    """Everything a refused post must leave alone."""
    fresh = Thread.objects.get(pk=thread.pk)
    return {
        "messages": list(Message.objects.order_by("thread_id", "seq").values_list("id", "seq", "content")),
        "last_seq": fresh.last_seq,
        "updated_at": fresh.updated_at,
        "status": fresh.status,
        "participants": sorted(
            Participant.objects.values_list("id", "tokens_void_before", "delivered_seq", "seen_seq")
        ),
    }


@contextmanager
def refused(thread, error_class):
    """Expect `error_class` and check that the refused request changed nothing."""
    before = stored_state(thread)
    with pytest.raises(error_class) as info:
        yield info
    assert stored_state(thread) == before


def token_state(sync):
    """What the database says of a sync context's token: its agent, whether it was used, whether it is void."""
    claims = reply_tokens.claims_of(sync.reply_token)
    void_before = (
        Participant.objects.filter(thread_id=claims.thread_id, agent_id=claims.agent_id)
        .values_list("tokens_void_before", flat=True)
        .first()
    )
    return SimpleNamespace(
        agent_id=claims.agent_id,
        used=Message.objects.filter(token_nonce=claims.nonce).exists(),
        voided=void_before is not None and claims.serial < void_before,
    )


# The admin and the console act as a staff user (threads.services.check_administrator).
STAFF = SimpleNamespace(is_active=True, is_staff=True)
