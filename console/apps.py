from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The team admins' live console: conversation screen, presence and dashboard inside the admin."""

    name = "console"
    verbose_name = "Live console"
