"""Presence events on the channel layer: online, offline and typing."""

from uuid import UUID

from agentchat.broadcast import group_send

PRESENCE_GROUP = "agentchat.presence"


def announce_presence(agent, *, online: bool) -> None:
    announce(agent_id=agent.pk, name=agent.name, online=online)


def announce_offline(*, agent_id: UUID, name: str) -> None:
    announce(agent_id=agent_id, name=name, online=False)


def announce(*, agent_id: UUID, name: str, online: bool) -> None:
    group_send(
        PRESENCE_GROUP,
        {"type": "agent.presence", "agent_id": str(agent_id), "name": name, "is_online": online},
    )


def announce_typing(agent, *, thread_id: str, is_typing: bool) -> None:
    group_send(
        PRESENCE_GROUP,
        {
            "type": "agent.typing",
            "agent_id": str(agent.pk),
            "name": agent.name,
            "thread_id": str(thread_id),
            "is_typing": is_typing,
        },
    )


REVOCATIONS_GROUP = "agentchat.revocations"


def announce_revocation(*, agent_id: UUID, generation: int) -> None:
    """Tell every server process that the agent's sessions bound before `generation` are revoked."""
    from agents import revocations

    revocations.note(agent_id=str(agent_id), generation=generation)  # this process: at once
    group_send(REVOCATIONS_GROUP, {"type": "agent.revoked", "agent_id": str(agent_id), "generation": generation})
