"""Agents as the wire protocol shows them (JSON types only)."""

from datetime import datetime
from typing import Any

from agents.models import Agent


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def agent_to_dict(agent: Agent, *, now: datetime | None = None) -> dict[str, Any]:
    return {
        "agent_id": str(agent.pk),
        "name": agent.name,
        "display_name": agent.display_name,
        "ide": agent.ide,
        "model": agent.model,
        "description": agent.description,
        "capabilities": list(agent.capabilities or []),
        "is_online": agent.is_online_at(now),
        "last_heartbeat": iso(agent.last_heartbeat),
        "last_activity": agent.last_activity,
        "last_activity_at": iso(agent.last_activity_at),
        "registered_at": iso(agent.registered_at),
    }
