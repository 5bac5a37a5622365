"""Close threads without activity for a while (run from cron; off by default)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from threads import services


class Command(BaseCommand):
    help = "Close open threads idle longer than THREAD_IDLE_TIMEOUT_MINUTES (0 turns this off)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--minutes", type=int, help="Idle minutes before a thread is closed.")
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; change nothing.")

    def handle(self, *args, minutes: int | None, dry_run: bool, **options) -> None:
        if minutes is None:
            minutes, source = settings.AGENTCHAT["THREAD_IDLE_TIMEOUT_MINUTES"], "THREAD_IDLE_TIMEOUT_MINUTES"
        else:
            source = "--minutes"
        if minutes < 0:
            raise CommandError(f"{source} must not be negative.")
        if minutes == 0:
            # Name what turned it off: the option given, or the setting.
            self.stdout.write(f"Idle threads are not closed ({source} is 0).")
            return
        closed = services.close_idle_threads(minutes=minutes, dry_run=dry_run)
        if options["verbosity"] >= 2:
            for thread in closed:
                self.stdout.write(f"  {thread.topic} ({thread.pk})")
        verb = "Would close" if dry_run else "Closed"
        self.stdout.write(self.style.SUCCESS(f"{verb} {len(closed)} thread(s) idle for more than {minutes} minute(s)."))
