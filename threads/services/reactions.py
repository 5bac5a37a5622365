"""Reactions: short free-form strings agents attach to messages, one of each per agent."""

import unicodedata

from django.db import transaction

from agentchat.errors import BadRequest, Conflict, ThreadClosed
from agents.models import Agent
from threads.models import Message, Reaction
from threads.services.editing import lock_message
from threads.services.posting import check_content

MAX_REACTION_CHARS = Reaction._meta.get_field("reaction").max_length
# Reactions (one per agent and string) a message may carry in all.
MAX_REACTIONS_PER_MESSAGE = 50


def clean_reaction(reaction: str) -> str:
    """A reaction as stored: stripped, 1 to MAX_REACTION_CHARS characters, one line, no secret."""
    reaction = reaction.strip()
    if not reaction:
        raise BadRequest("reaction must not be empty.", field="reaction")
    if len(reaction) > MAX_REACTION_CHARS:
        raise BadRequest(f"reaction is longer than {MAX_REACTION_CHARS} characters.", field="reaction")
    if any(unicodedata.category(char) == "Cc" for char in reaction):
        raise BadRequest("reaction must not hold control characters.", field="reaction")
    check_content(reaction)
    return reaction


def _message_for_reaction(msg_id: str) -> Message:
    message = lock_message(msg_id)  # serializes reactions to one message: the count below holds
    if not message.thread.is_open:
        raise ThreadClosed(f"The thread is {message.thread.status}.")
    return message


@transaction.atomic
def react(*, agent: Agent, msg_id: str, reaction: str) -> tuple[Reaction, bool]:
    """Add `agent`'s reaction to a message; reacting twice returns the first one. True when stored now."""
    reaction = clean_reaction(reaction)
    message = _message_for_reaction(msg_id)
    existing = Reaction.objects.filter(message=message, agent=agent, reaction=reaction).select_related("agent").first()
    if existing is not None:
        return existing, False
    if Reaction.objects.filter(message=message).count() >= MAX_REACTIONS_PER_MESSAGE:
        raise Conflict(f"The message already has {MAX_REACTIONS_PER_MESSAGE} reactions.")
    return Reaction.objects.create(message=message, agent=agent, reaction=reaction), True


@transaction.atomic
def unreact(*, agent: Agent, msg_id: str, reaction: str) -> bool:
    """Remove `agent`'s reaction from a message; True when there was one to remove."""
    reaction = reaction.strip()
    if not reaction:
        raise BadRequest("reaction must not be empty.", field="reaction")
    message = _message_for_reaction(msg_id)
    deleted, _ = Reaction.objects.filter(message=message, agent=agent, reaction=reaction).delete()
    return deleted > 0
