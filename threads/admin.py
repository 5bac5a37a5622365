from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
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


class HumanPostForm(forms.Form):
    content = forms.CharField(widget=forms.Textarea(attrs={"rows": 8, "cols": 80}))
    priority = forms.ChoiceField(choices=Message.Priority.choices, initial=Message.Priority.NORMAL)
    human_only = forms.BooleanField(
        required=False, help_text="Agents see the message (and its seq) but not its content."
    )


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    list_display = ["topic", "status", "message_count", "updated_at", "participant_count", "creator", "created_at"]
    list_filter = ["status", "created_at", "updated_at"]
    list_select_related = ["creator"]
    search_fields = ["topic", "summary"]
    date_hierarchy = "created_at"
    # Status changes go through the actions, which apply the same rules as the ops.
    readonly_fields = ["id", "status", "last_seq", "creator", "administrator", "created_at", "updated_at", "closed_at"]
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
        "administrator",
        "created_at",
        "updated_at",
        "closed_at",
    ]
    inlines = [MessageInline]
    actions = ["close_threads", "archive_threads", "reopen_threads"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(participants=Count("messages__author", distinct=True))

    def get_urls(self):
        post = self.admin_site.admin_view(self.post_view)
        return [path("<uuid:pk>/post/", post, name="threads_thread_post"), *super().get_urls()]

    def post_view(self, request, pk):
        """Let a human post into the thread (role `user`); it wakes the waiting agents."""
        thread = get_object_or_404(Thread, pk=pk)
        if not self.has_change_permission(request, thread):
            return redirect("admin:threads_thread_change", pk)
        form = HumanPostForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                message = services.post_human_message(
                    thread=thread,
                    content=form.cleaned_data["content"],
                    author_name=request.user.get_username(),
                    human_only=form.cleaned_data["human_only"],
                    priority=form.cleaned_data["priority"],
                )
            except ProtocolError as error:
                form.add_error("content", error.message)
            else:
                self.message_user(request, f"Posted message #{message.seq}.", messages.SUCCESS)
                return redirect("admin:threads_thread_change", pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "thread": thread,
            "form": form,
            "title": f"Post to {thread}",
        }
        return TemplateResponse(request, "admin/threads/thread/post_message.html", context)

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

    # The actions act as the staff user; the domain checks that they may.
    @admin.action(description="Close selected threads")
    def close_threads(self, request, queryset) -> None:
        close = services.close_thread
        self._apply(request, queryset, lambda t: close(thread_id=t.pk, staff_user=request.user), "Closed")

    @admin.action(description="Archive selected threads")
    def archive_threads(self, request, queryset) -> None:
        archive = services.archive_thread
        self._apply(request, queryset, lambda t: archive(thread_id=t.pk, staff_user=request.user), "Archived")

    @admin.action(description="Reopen selected threads (into discuss)")
    def reopen_threads(self, request, queryset) -> None:
        reopen = services.set_thread_state
        self._apply(
            request, queryset, lambda t: reopen(thread_id=t.pk, state="discuss", staff_user=request.user), "Reopened"
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
