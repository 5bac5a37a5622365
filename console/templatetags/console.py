from datetime import timedelta

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from console import selectors

register = template.Library()


@register.simple_tag
def dashboard_tiles() -> list[dict]:
    """The dashboard's counters, each linking to the filtered list it counts."""
    now = timezone.now()
    counters = selectors.dashboard_counters(now=now)
    threads = reverse("admin:threads_thread_changelist")
    messages = reverse("admin:threads_message_changelist")
    since = (now - timedelta(hours=24)).strftime("%Y-%m-%d %H:%M:%S")
    tiles = [
        ("online", "agents online now", reverse("admin:agents_agent_changelist") + "?presence=online"),
        ("waiting", "agents waiting now", threads + "?waiting=yes"),
        ("active_threads", "threads active in the last hour", threads + "?activity=hour"),
        ("messages_24h", "messages in the last 24 h", messages + f"?created_at__gte={since}"),
        ("urgent_unanswered", "urgent messages without a human reply", messages + "?unanswered=urgent"),
        ("needs_human", "requests for a human", "#human-queue"),
        ("overdue_replies", "overdue replies", "#overdue-queue"),
    ]
    return [{"key": key, "label": label, "url": url, "value": counters[key]} for key, label, url in tiles]


@register.simple_tag
def console_queues():
    """The requests for a human and the overdue replies, oldest first (the live socket refreshes them)."""
    return mark_safe(selectors.queues_html())  # rendered by a template, escaped there
