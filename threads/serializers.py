"""Threads and messages as the wire protocol shows them (JSON types only)."""

from typing import Any

from agents.serializers import iso
from threads.models import Message, Thread

HIDDEN_CONTENT = "[human-only content hidden]"


def thread_to_dict(thread: Thread) -> dict[str, Any]:
    return {
        "thread_id": str(thread.pk),
        "topic": thread.topic,
        "status": thread.status,
        "created_at": iso(thread.created_at),
        "updated_at": iso(thread.updated_at),
        "closed_at": iso(thread.closed_at),
        "summary": thread.summary,
        "system_prompt": thread.system_prompt,
        "template_id": thread.template_id,
        "metadata": thread.metadata or {},
        "last_seq": thread.last_seq,
        "creator_agent_id": str(thread.creator_id) if thread.creator_id else None,
        "administrator_agent_id": str(thread.administrator_id) if thread.administrator_id else None,
    }


def message_to_dict(message: Message, *, for_agent: bool = True) -> dict[str, Any]:
    """Serialize a message; agents never see the content of human-only ones."""
    hidden = for_agent and message.is_human_only
    return {
        "msg_id": str(message.pk),
        "thread_id": str(message.thread_id),
        "seq": message.seq,
        "author_id": str(message.author_id) if message.author_id else None,
        "author_name": message.author_name,
        "role": message.role,
        "content": HIDDEN_CONTENT if hidden else message.content,
        "priority": message.priority,
        "reply_to_msg_id": str(message.reply_to_id) if message.reply_to_id else None,
        "metadata": message.metadata or {},
        "created_at": iso(message.created_at),
        "edited_at": iso(message.edited_at),
        "edit_version": message.edit_version,
    }


def messages_to_list(messages: list[Message]) -> list[dict[str, Any]]:
    return [message_to_dict(m) for m in messages]
