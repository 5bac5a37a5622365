"""Kept for existing crontabs: reply tokens are signed, not stored, so there is nothing to purge."""

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Obsolete: reply tokens are signed by the server and not stored; this deletes nothing."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Accepted for existing crontabs; changes nothing.")

    def handle(self, *args, dry_run: bool, **options) -> None:
        self.stdout.write(
            "Reply tokens are signed by the server and not stored: there is nothing to purge. "
            "Remove this command from your crontab."
        )
