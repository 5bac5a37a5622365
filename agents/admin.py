from django.contrib import admin, messages
from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from agents import services
from agents.models import Agent
from console.names import agent_detail, agent_name
from threads.models import Message


def ago(moment) -> str:
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


class OnlineFilter(admin.SimpleListFilter):
    title = "presence"
    parameter_name = "presence"

    def lookups(self, request, model_admin):
        return [("online", "Online"), ("offline", "Offline")]

    def queryset(self, request, queryset):
        if self.value() == "online":
            return queryset.online()
        if self.value() == "offline":
            return queryset.offline()
        return queryset


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["label", "ide", "model", "online", "last_seen", "activity", "thread_count", "message_count"]
    list_filter = [OnlineFilter, "ide", "model"]
    search_fields = ["name", "display_name", "ide", "model", "description"]
    date_hierarchy = "registered_at"
    # token_hash is excluded: nothing in the admin shows a token or its hash.
    fields = [
        "id",
        "name",
        "display_name",
        "ide",
        "model",
        "description",
        "capabilities",
        "status",
        "last_heartbeat",
        "last_activity",
        "last_activity_at",
        "registered_at",
        "unregistered_at",
    ]
    readonly_fields = [
        "id",
        "name",
        "ide",
        "model",
        "status",
        "last_heartbeat",
        "last_activity",
        "last_activity_at",
        "registered_at",
        "unregistered_at",
    ]
    actions = ["mark_offline", "rotate_token"]

    def has_add_permission(self, request) -> bool:
        return False  # agents register themselves over the WebSocket

    def get_queryset(self, request):
        # Correlated subqueries on the (author, created_at) index, evaluated for
        # the rows of the page only: no join over every message.
        mine = Message.objects.filter(author=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_post_at=Subquery(mine.order_by("-created_at").values("created_at")[:1]),
                message_total=Coalesce(
                    Subquery(mine.order_by().values("author").annotate(n=Count("pk")).values("n")), 0
                ),
                thread_total=Coalesce(
                    Subquery(mine.order_by().values("author").annotate(n=Count("thread", distinct=True)).values("n")),
                    0,
                ),
            )
        )

    @admin.display(description="name", ordering="name")
    def label(self, agent: Agent) -> str:
        return format_html("{} <small>{}</small>", agent_name(agent), agent_detail(agent))

    @admin.display(boolean=True, description="online", ordering="last_heartbeat")
    def online(self, agent: Agent) -> bool:
        return agent.is_online

    @admin.display(description="last seen", ordering="last_heartbeat")
    def last_seen(self, agent: Agent) -> str:
        return format_html('<time title="{}">{}</time>', agent.last_heartbeat.isoformat(), ago(agent.last_heartbeat))

    @admin.display(description="last activity", ordering=Coalesce(F("last_post_at"), F("last_activity_at")))
    def activity(self, agent: Agent) -> str:
        """The newest of its last post and its last stored op: a post always shows."""
        post, op = agent.last_post_at, agent.last_activity_at
        if post is not None and (op is None or post >= op):
            return format_html('posted <time title="{}">{}</time>', post.isoformat(), ago(post))
        if op is None:
            return "—"
        return format_html('{} <time title="{}">{}</time>', agent.last_activity, op.isoformat(), ago(op))

    @admin.display(description="threads", ordering="thread_total")
    def thread_count(self, agent: Agent) -> int:
        return agent.thread_total

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, agent: Agent) -> int:
        return agent.message_total

    @admin.action(description="Mark selected agents offline now")
    def mark_offline(self, request, queryset) -> None:
        # The sweep's compare-and-set, limited to the selected agents: only those
        # online now are marked (and announced); heartbeats are left as they were.
        marked = services.mark_offline(agent_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Marked {len(marked)} agent(s) offline.", messages.SUCCESS)

    @admin.action(description="Rotate token (shown once, here)")
    def rotate_token(self, request, queryset):
        """Give each agent a new token and show it once, in this response only.

        The tokens are not stored in clear anywhere: not in the messages
        framework (a cookie or the session), not in the admin history.
        """
        rotated = []
        for agent in queryset:
            token = services.rotate_token(agent=agent)
            self.log_change(request, agent, "Rotated the token.")
            rotated.append({"name": agent_name(agent), "detail": agent_detail(agent), "id": agent.pk, "token": token})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "New agent tokens",
            "rotated": rotated,
        }
        response = TemplateResponse(request, "admin/agents/agent/rotated_tokens.html", context)
        response["Cache-Control"] = "no-store"
        return response
