"""Create the first admin account for a fresh install and say how to log in."""

import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


def manage_py() -> str:
    """How to run manage.py with this Python (the project's .venv, not the system's, which lacks Django)."""
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path(settings.BASE_DIR))
    except ValueError:
        pass
    return f"{python} manage.py"


class Command(BaseCommand):
    help = "Create a superuser named 'admin' with a random password if no superuser exists yet."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/", help="Where the admin is served.")

    def handle(self, *args, url: str, **options) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                f"Admin: {url} (log in with your superuser; "
                f"reset a password with `{manage_py()} changepassword USERNAME`)."
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username="admin", email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"Admin: {url}  user: admin  password: {password}"))
        self.stdout.write(f"This password is shown once; change it with `{manage_py()} changepassword admin`.")
