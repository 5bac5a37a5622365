from django.apps import AppConfig


class AgentChatConfig(AppConfig):
    """The project itself as an app: project-wide commands (bootstrap_admin) and system checks."""

    name = "agentchat"
    verbose_name = "AgentChat"

    def ready(self) -> None:
        from agentchat import checks  # noqa: F401  (registers the system checks)
