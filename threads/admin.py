from django.contrib import admin, messages
from django.db.models import Count
from django.utils.text import Truncator

from agentchat.errors import ProtocolError
from threads import services
from threads.models import Message, ReplyToken, Thread, ThreadTemplate


class MessageInline(admin.TabularInline):
    """The thread's messages, read in order on its page."""

    model = Message
    fields = ["seq", "author_name", "role", "priority", "content", "created_at"]
    readonly_fields = fields
    ordering = ["seq"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    list_display = ["topic", "status", "message_count", "updated_at", "participant_count", "creator", "created_at"]
    list_filter = ["status", "created_at", "updated_at"]
    list_select_related = ["creator"]
    search_fields = ["topic", "summary"]
    date_hierarchy = "created_at"
    readonly_fields = ["id", "last_seq", "creator", "created_at", "updated_at", "closed_at"]
    fields = [
        "id",
        "topic",
        "status",
        "summary",
        "system_prompt",
        "template",
        "metadata",
        "last_seq",
        "creator",
        "created_at",
        "updated_at",
        "closed_at",
    ]
    inlines = [MessageInline]
    actions = ["close_threads", "archive_threads", "reopen_threads"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(participants=Count("messages__author", distinct=True))
        )

    @admin.display(description="messages", ordering="last_seq")
    def message_count(self, thread: Thread) -> int:
        return thread.last_seq  # seq is gap-free, so the last seq is the count

    @admin.display(description="participants", ordering="participants")
    def participant_count(self, thread: Thread) -> int:
        return thread.participants

    def _apply(self, request, queryset, action, verb: str) -> None:
        done = 0
        for thread in queryset:
            try:
                action(thread)
                done += 1
            except ProtocolError as error:
                self.message_user(request, f"{thread}: {error.message}", messages.WARNING)
        self.message_user(request, f"{verb} {done} thread(s).", messages.SUCCESS)

    @admin.action(description="Close selected threads")
    def close_threads(self, request, queryset) -> None:
        self._apply(request, queryset, lambda t: services.close_thread(thread_id=t.pk), "Closed")

    @admin.action(description="Archive selected threads")
    def archive_threads(self, request, queryset) -> None:
        self._apply(request, queryset, lambda t: services.archive_thread(thread_id=t.pk), "Archived")

    @admin.action(description="Reopen selected threads (into discuss)")
    def reopen_threads(self, request, queryset) -> None:
        self._apply(
            request, queryset, lambda t: services.set_thread_state(thread_id=t.pk, state="discuss"), "Reopened"
        )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["thread", "seq", "author_name", "role", "priority", "preview", "created_at"]
    list_filter = ["role", "priority", "created_at"]
    list_select_related = ["thread"]
    search_fields = ["content", "author_name", "thread__topic"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = [
        "id",
        "thread",
        "seq",
        "author",
        "author_name",
        "role",
        "content",
        "priority",
        "reply_to",
        "metadata",
        "client_msg_id",
        "created_at",
        "edited_at",
        "edit_version",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # messages are a log; edits go through msg_edit

    @admin.display(description="content")
    def preview(self, message: Message) -> str:
        return Truncator(message.content).chars(80)


@admin.register(ThreadTemplate)
class ThreadTemplateAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "created_at"]
    search_fields = ["id", "name", "description"]


@admin.register(ReplyToken)
class ReplyTokenAdmin(admin.ModelAdmin):
    """Token bookkeeping for debugging sync problems; never the token or its hash."""

    list_display = ["agent", "thread", "issued_seq", "created_at", "expires_at", "consumed_at", "voided_at"]
    list_filter = ["created_at"]
    list_select_related = ["agent", "thread"]
    fields = ["agent", "thread", "issued_seq", "created_at", "expires_at", "consumed_at", "voided_at"]
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
