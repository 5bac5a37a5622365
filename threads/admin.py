from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import Truncator

from agentchat.errors import ProtocolError
from threads import search, services
from threads.models import Message, MessageEdit, Reaction, ReplyToken, Thread, ThreadTemplate


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


class EditContentForm(forms.Form):
    content = forms.CharField(widget=forms.Textarea(attrs={"rows": 12, "cols": 80}), strip=False)


class MessageEditInline(admin.TabularInline):
    """The message's earlier contents, oldest first (append-only)."""

    model = MessageEdit
    fields = ["version", "old_content", "editor_name", "created_at"]
    readonly_fields = fields
    ordering = ["version"]
    extra = 0
    can_delete = False
    verbose_name = "earlier content"
    verbose_name_plural = "edit history"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReactionInline(admin.TabularInline):
    model = Reaction
    fields = ["reaction", "agent", "created_at"]
    readonly_fields = fields
    ordering = ["created_at", "pk"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
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
    readonly_fields = ["id", "status", "last_seq", "creator", "created_at", "updated_at", "closed_at"]
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

    @admin.action(description="Close selected threads")
    def close_threads(self, request, queryset) -> None:
        self._apply(request, queryset, lambda t: services.close_thread(thread_id=t.pk), "Closed")

    @admin.action(description="Archive selected threads")
    def archive_threads(self, request, queryset) -> None:
        self._apply(request, queryset, lambda t: services.archive_thread(thread_id=t.pk), "Archived")

    @admin.action(description="Reopen selected threads (into discuss)")
    def reopen_threads(self, request, queryset) -> None:
        self._apply(request, queryset, lambda t: services.set_thread_state(thread_id=t.pk, state="discuss"), "Reopened")


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

    inlines = [MessageEditInline, ReactionInline]
    # Searching the messages uses the full-text index, human-only messages included.
    search_help_text = "Full-text search: the messages holding every word (the 200 best matches)."
    search_limit = 200

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # messages are a log; content changes only through the edit page (edit_message)

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        try:
            hits, _ = search.search_messages(query=search_term, limit=self.search_limit, include_human_only=True)
        except ProtocolError as error:
            self.message_user(request, error.message, messages.WARNING)
            return queryset.none(), False
        return queryset.filter(pk__in=[hit.message.pk for hit in hits]), False

    def get_urls(self):
        edit = self.admin_site.admin_view(self.edit_content_view)
        return [path("<uuid:pk>/edit-content/", edit, name="threads_message_edit_content"), *super().get_urls()]

    def edit_content_view(self, request, pk):
        """Let a staff user replace a message's content; the old content joins the edit history."""
        message = get_object_or_404(Message, pk=pk)
        if not request.user.has_perm("threads.change_message"):
            return redirect("admin:threads_message_change", pk)
        form = EditContentForm(request.POST or None, initial={"content": message.content})
        if request.method == "POST" and form.is_valid():
            try:
                edited = services.edit_message(
                    msg_id=str(message.pk), content=form.cleaned_data["content"], staff_user=request.user
                )
            except ProtocolError as error:
                form.add_error("content", error.message)
            else:
                if edited.changed:
                    self.message_user(request, f"Saved version {edited.message.edit_version}.", messages.SUCCESS)
                else:
                    self.message_user(request, "The content is unchanged; nothing was saved.", messages.INFO)
                return redirect("admin:threads_message_change", pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "message": message,
            "form": form,
            "title": f"Edit message {message}",
        }
        return TemplateResponse(request, "admin/threads/message/edit_content.html", context)

    @admin.display(description="content")
    def preview(self, message: Message) -> str:
        return Truncator(message.content).chars(80)


@admin.register(ThreadTemplate)
class ThreadTemplateAdmin(admin.ModelAdmin):
    """Templates agents list with template_list and apply with thread_create; the built-ins come from a migration."""

    list_display = ["id", "name", "description", "created_at"]
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
