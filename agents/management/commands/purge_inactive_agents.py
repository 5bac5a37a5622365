"""Delete agents that have shown no sign of life for a long time (run from cron)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from agents import services


class Command(BaseCommand):
    help = (
        "Delete agents without a heartbeat for INACTIVE_AGENT_DAYS days (0 turns this off); "
        "their messages keep the author's name."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, help="Days without a heartbeat (default: INACTIVE_AGENT_DAYS).")
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; change nothing.")

    def handle(self, *args, days: int | None, dry_run: bool, **options) -> None:
        if days is None:
            days, source = settings.AGENTCHAT["INACTIVE_AGENT_DAYS"], "INACTIVE_AGENT_DAYS"
        else:
            source = "--days"
        if days < 0:
            raise CommandError(f"{source} must not be negative.")
        if days == 0:
            self.stdout.write(f"Inactive agents are not purged ({source} is 0).")
            return
        purged = services.purge_inactive_agents(days=days, dry_run=dry_run)
        if options["verbosity"] >= 2:
            for agent in purged:
                self.stdout.write(f"  {agent['name']} ({agent['id']})")
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(self.style.SUCCESS(f"{verb} {len(purged)} agent(s) inactive for more than {days} day(s)."))
