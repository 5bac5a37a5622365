"""Threads and messages as the wire protocol shows them (JSON types only)."""

from typing import Any

from agents.serializers import agent_to_dict, iso
from threads.models import Message, MessageEdit, Reaction, Thread, ThreadTemplate

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


def edit_to_dict(edit: MessageEdit, *, hidden: bool) -> dict[str, Any]:
    """One edit of a message: `version` is the edit_version it produced, `old_content` what it replaced."""
    return {
        "version": edit.version,
        "old_content": HIDDEN_CONTENT if hidden else edit.old_content,
        "edited_by": str(edit.editor_agent_id) if edit.editor_agent_id else None,
        "editor_name": edit.editor_name,
        "created_at": iso(edit.created_at),
    }


def reaction_to_dict(reaction: Reaction) -> dict[str, Any]:
    return {
        "reaction": reaction.reaction,
        "agent_id": str(reaction.agent_id),
        "agent_name": reaction.agent.name,
        "created_at": iso(reaction.created_at),
    }


def template_to_dict(template: ThreadTemplate) -> dict[str, Any]:
    return {
        "template_id": template.pk,
        "name": template.name,
        "description": template.description,
        "system_prompt": template.system_prompt,
        "default_metadata": template.default_metadata or {},
        "created_at": iso(template.created_at),
    }


def participant_to_dict(view, *, now=None) -> dict[str, Any]:
    """thread_participants: one agent's cursors in a thread (a threads.selectors.ParticipantView)."""
    row = view.row
    return {
        "agent": agent_to_dict(row.agent, now=now),
        "is_administrator": view.is_administrator,
        "delivered_seq": row.delivered_seq,
        "delivered_at": iso(row.delivered_at),
        "seen_seq": row.seen_seq,
        "seen_at": iso(row.seen_at),
        "last_post_seq": row.last_post_seq,
        "last_post_at": iso(row.last_post_at),
        "waiting": view.waiting,
        "online": row.agent.is_online_at(now),
    }


def receipt_to_dict(receipt) -> dict[str, Any]:
    """msg_receipts: one addressee's receipt (a threads.selectors.Receipt)."""
    return {
        "agent_id": receipt.agent_id,
        "delivered_at": iso(receipt.delivered_at),
        "seen_at": iso(receipt.seen_at),
        "answered_at": iso(receipt.answered_at),
        "answer_msg_id": receipt.answer_msg_id,
    }
