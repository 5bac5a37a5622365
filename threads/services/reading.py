"""Reads that hand messages to an agent, and so move its cursors: msg_list and msg_get."""

from typing import Any

from agentchat.transport import reply_budget, take_within
from agents.models import Agent
from threads import selectors
from threads.models import Message, Reaction
from threads.serializers import messages_to_list
from threads.services.cursors import advance_cursors, delivery


def list_messages_for(
    *, agent: Agent, thread_id: str, after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], bool, int]:
    """msg_list: the messages after `after_seq` that fit in a reply, whether more follow, the thread's seq.

    Counts as delivery of what is returned and as the agent having read up to
    `after_seq` (one statement).
    """
    thread = selectors.get_thread(thread_id=thread_id)
    messages = selectors.list_messages(thread=thread, after_seq=after_seq, limit=limit + 1)
    has_more = len(messages) > limit
    messages = messages[:limit]
    listed = take_within(messages_to_list(messages), reply_budget())
    advance_cursors(
        [
            delivery(
                thread_id=thread.pk,
                agent_id=agent.pk,
                messages=messages[: len(listed)],
                seen_seq=min(after_seq, thread.last_seq),
            )
        ]
    )
    return listed, has_more or len(listed) < len(messages), thread.last_seq


def get_message_for(*, agent: Agent, msg_id: str) -> tuple[Message, list[Reaction]]:
    """msg_get: a message and its reactions; counts as delivery of the message (one statement)."""
    message, reactions = selectors.message_with_reactions(msg_id=msg_id)
    advance_cursors([delivery(thread_id=message.thread_id, agent_id=agent.pk, messages=[message])])
    return message, reactions
