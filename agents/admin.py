from django.contrib import admin, messages
from django.db.models import Count
from django.utils import timezone

from agents import services
from agents.models import Agent


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
    list_display = ["name", "display_name", "ide", "model", "online", "last_seen", "last_activity", "message_count"]
    list_filter = [OnlineFilter, "ide", "model", "status"]
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
        return super().get_queryset(request).annotate(message_total=Count("messages"))

    @admin.display(boolean=True, description="online")
    def online(self, agent: Agent) -> bool:
        return agent.is_online

    @admin.display(description="last seen", ordering="last_heartbeat")
    def last_seen(self, agent: Agent) -> str:
        seconds = int((timezone.now() - agent.last_heartbeat).total_seconds())
        return f"{seconds} s ago" if seconds < 3600 else f"{seconds // 3600} h ago"

    @admin.display(description="messages", ordering="message_total")
    def message_count(self, agent: Agent) -> int:
        return agent.message_total

    @admin.action(description="Mark selected agents offline now")
    def mark_offline(self, request, queryset) -> None:
        # The sweep's compare-and-set, limited to the selected agents: only those
        # online now are marked (and announced); heartbeats are left as they were.
        marked = services.mark_offline(agent_ids=queryset.values_list("pk", flat=True))
        self.message_user(request, f"Marked {len(marked)} agent(s) offline.", messages.SUCCESS)

    @admin.action(description="Rotate token (the agent must register again)")
    def rotate_token(self, request, queryset) -> None:
        for agent in queryset:
            services.rotate_token(agent=agent)  # the new token is not shown to anyone
        self.message_user(
            request,
            f"Rotated the token of {queryset.count()} agent(s); the old token no longer works.",
            messages.SUCCESS,
        )
