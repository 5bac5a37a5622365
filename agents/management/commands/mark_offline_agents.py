"""Mark agents offline whose heartbeat is older than the timeout (run from cron)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from agents import services


class Command(BaseCommand):
    help = "Mark agents offline whose last heartbeat is older than the heartbeat timeout, and announce it."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--timeout",
            type=int,
            help="Seconds without a heartbeat before an agent is offline (default: AGENT_HEARTBEAT_TIMEOUT).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; change nothing.")

    def handle(self, *args, timeout: int | None, dry_run: bool, **options) -> None:
        if timeout is not None and timeout <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        marked = services.mark_offline_agents(timeout=timeout, dry_run=dry_run)
        seconds = timeout if timeout is not None else settings.AGENTCHAT["AGENT_HEARTBEAT_TIMEOUT"]
        if options["verbosity"] >= 2:
            for agent in marked:
                self.stdout.write(f"  {agent['name']} ({agent['id']})")
        verb = "Would mark" if dry_run else "Marked"
        self.stdout.write(self.style.SUCCESS(f"{verb} {len(marked)} agent(s) offline (no heartbeat for {seconds} s)."))
