"""One name rule for agents everywhere: the display name, with the IDE and model beside it."""

from agents.models import Agent


def agent_name(agent: Agent) -> str:
    return agent.display_name or agent.name


def agent_detail(agent: Agent) -> str:
    return f"{agent.ide} · {agent.model}"


def agent_label(agent: Agent) -> str:
    return f"{agent_name(agent)} ({agent_detail(agent)})"
