from django.apps import AppConfig


class AgentChatConfig(AppConfig):
    """The project itself as an app: project-wide commands (bootstrap_admin) and system checks."""

    name = "agentchat"
    verbose_name = "AgentChat"

    def ready(self) -> None:
        from agentchat import checks  # noqa: F401  (registers the system checks)
        from agentchat.transport import configure_daphne

        # Before `runserver` builds its endpoints (daphne's own CLI loads the app first, asgi.py does it there).
        configure_daphne()
