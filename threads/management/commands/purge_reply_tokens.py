"""Delete reply tokens that can never be used again (run from cron)."""

from django.core.management.base import BaseCommand

from threads import services


class Command(BaseCommand):
    help = "Delete consumed, voided and expired reply tokens."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; change nothing.")

    def handle(self, *args, dry_run: bool, **options) -> None:
        count = services.purge_reply_tokens(dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(self.style.SUCCESS(f"{verb} {count} reply token(s)."))
