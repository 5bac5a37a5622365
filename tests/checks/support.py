"""Run the AGENTCHAT checks under changed settings and name what they report."""

from agentchat import settings as project_settings
from agentchat.checks import check_agentchat_settings


def reported(settings, **values) -> list[str]:
    """The ids the checks report with these AGENTCHAT values (others as the test run loaded them)."""
    settings.AGENTCHAT = {**project_settings.AGENTCHAT, **values}
    return [message.id for message in check_agentchat_settings(None)]


def hint_of(settings, check_id: str, **values) -> str:
    settings.AGENTCHAT = {**project_settings.AGENTCHAT, **values}
    [message] = [m for m in check_agentchat_settings(None) if m.id == check_id]
    return message.hint
