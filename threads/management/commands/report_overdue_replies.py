"""Print the overdue replies, one line each (run from cron; prints nothing when none is overdue)."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from agents.serializers import iso
from console.names import agent_name
from threads import selectors

# Lines printed at most; the report says when there were more.
MAX_LINES = 1000


class Command(BaseCommand):
    help = (
        "List messages addressed to an agent that it was delivered and has not answered within "
        "REPLY_EXPECTED_SECONDS (0 turns this off). Exits 0; prints nothing when none is overdue."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="One JSON object a line, for machines.")
        parser.add_argument("--seconds", type=int, help="Override REPLY_EXPECTED_SECONDS.")

    def handle(self, *args, json: bool, seconds: int | None, **options) -> None:
        if seconds is not None and seconds < 0:
            raise CommandError("--seconds must not be negative.")
        now = timezone.now()
        overdue = selectors.overdue_replies(now=now, limit=MAX_LINES + 1, seconds=seconds)
        for item in overdue[:MAX_LINES]:
            self.stdout.write(self.as_json(item, now) if json else self.as_line(item, now))
        if len(overdue) > MAX_LINES and not json:
            self.stdout.write(f"(more than {MAX_LINES} overdue replies; the oldest are listed)")

    @staticmethod
    def as_line(item: selectors.Overdue, now) -> str:
        minutes = int((now - item.since).total_seconds() // 60)
        return (
            f"{agent_name(item.agent)} owes {item.message.author_name} a reply to #{item.message.seq} "
            f"in “{item.thread.topic}” ({item.thread.pk}) since {iso(item.since)} ({minutes} min)"
        )

    @staticmethod
    def as_json(item: selectors.Overdue, now) -> str:
        return json_line(
            {
                "thread_id": str(item.thread.pk),
                "topic": item.thread.topic,
                "msg_id": str(item.message.pk),
                "seq": item.message.seq,
                "from_agent_id": str(item.message.author_id) if item.message.author_id else None,
                "from_name": item.message.author_name,
                "owed_by_agent_id": str(item.agent.pk),
                "owed_by_name": agent_name(item.agent),
                "since": iso(item.since),
                "overdue_seconds": int((now - item.since).total_seconds()),
            }
        )


def json_line(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False)
