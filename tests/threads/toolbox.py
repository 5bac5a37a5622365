"""Helpers shared by the tests of edits, reactions, search and templates."""

from contextlib import contextmanager

import pytest

from threads import services
from threads.models import Message, MessageEdit, Reaction, Thread

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def post_as(agent, thread, content="hello", **kwargs) -> Message:
    """Post as `agent`, having read the whole thread (a fresh token at its newest seq)."""
    last_seq = Thread.objects.get(pk=thread.pk).last_seq
    sync = services.issue_reply_token(thread_id=thread.pk, agent_id=agent.pk, read_seq=last_seq)
    message, _ = services.post_message(
        agent=agent,
        thread_id=str(thread.pk),
        content=content,
        expected_last_seq=sync.current_seq,
        reply_token=sync.reply_token,
        **kwargs,
    )
    return message


def stored() -> dict:
    """Everything an edit or a reaction could change."""
    return {
        "messages": list(
            Message.objects.order_by("thread_id", "seq").values_list(
                "id", "seq", "content", "edit_version", "edited_at"
            )
        ),
        "edits": list(MessageEdit.objects.order_by("pk").values_list("pk", "message_id", "version", "old_content")),
        "reactions": list(Reaction.objects.order_by("pk").values_list("pk", "message_id", "agent_id", "reaction")),
        "threads": list(Thread.objects.order_by("pk").values_list("pk", "last_seq", "updated_at", "status")),
    }


@contextmanager
def refused(error_class):
    """Expect `error_class` and check that the refused request stored nothing."""
    before = stored()
    with pytest.raises(error_class) as info:
        yield info
    assert stored() == before
