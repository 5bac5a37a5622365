from django.apps import AppConfig


class AgentChatConfig(AppConfig):
    """The project itself as an app: project-wide commands (bootstrap_admin)."""

    name = "agentchat"
    verbose_name = "AgentChat"
