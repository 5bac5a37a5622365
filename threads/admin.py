import json
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Substr
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from agentchat.errors import ProtocolError
from console import selectors as console
from console.names import agent_label
from threads import search, services
from threads.models import Message, MessageEdit, Participant, Reaction, Thread, ThreadTemplate


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
    content = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}))
    priority = forms.ChoiceField(choices=Message.Priority.choices, initial=Message.Priority.NORMAL, required=False)
    urgent = forms.BooleanField(required=False, help_text="Same as priority urgent.")
    human_only = forms.BooleanField(
        required=False, help_text="Agents see the message (and its seq) but not its content."
    )
    # Set by "Answer" on a request for a human: the post answers it (and mentions the asking agent).
    reply_to_msg_id = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def chosen_priority(self) -> str:
        if self.cleaned_data.get("urgent"):
            return Message.Priority.URGENT
        return self.cleaned_data.get("priority") or Message.Priority.NORMAL


class ActivityFilter(admin.SimpleListFilter):
    title = "activity"
    parameter_name = "activity"
    windows = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}

    def lookups(self, request, model_admin):
        return [
            ("hour", "Active in the last hour"),
            ("day", "Last 24 hours"),
            ("week", "Last 7 days"),
            ("idle", "Idle over 7 days"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() in self.windows:
            return queryset.filter(updated_at__gte=now - self.windows[self.value()])
        if self.value() == "idle":
            return queryset.filter(updated_at__lt=now - self.windows["week"])
        return queryset


class WaitingFilter(admin.SimpleListFilter):
    title = "waiting now"
    parameter_name = "waiting"

    def lookups(self, request, model_admin):
        return [("yes", "An agent is waiting")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(pk__in=list(console.waiting_by_thread()))
        return queryset


class ThreadChangeList(ChangeList):
    """Adds what a row needs from outside its own columns, for the whole page at once."""

    def get_results(self, request):
        super().get_results(request)
        threads = list(self.result_list)
        counts = dict(
            Message.objects.filter(thread_id__in=[t.pk for t in threads])
            .values("thread_id")
            .annotate(n=Count("author", distinct=True))
            .values_list("thread_id", "n")
        )
        waiting = console.waiting_by_thread()
        for thread in threads:
            thread.participant_total = counts.get(thread.pk, 0)
            thread.waiting_now = len(waiting.get(str(thread.pk), ()))


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    list_display = ["topic", "status", "last_message", "message_count", "participant_count", "waiting_now"]
    list_filter = ["status", ActivityFilter, WaitingFilter]
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
    actions = ["close_threads", "archive_threads", "reopen_threads"]

    def get_changelist(self, request, **kwargs):
        return ThreadChangeList

    def get_queryset(self, request):
        newest = Message.objects.filter(thread=OuterRef("pk"), seq=OuterRef("last_seq"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_preview=Substr(Subquery(newest.values("content")[:1]), 1, 100),
                last_author=Subquery(newest.values("author_name")[:1]),
                last_message_at=Subquery(newest.values("created_at")[:1]),
            )
        )

    # --- the conversation screen -------------------------------------------------

    def get_urls(self):
        def view(func):
            return self.admin_site.admin_view(func)

        return [
            path("<uuid:pk>/post/", view(self.post_view), name="threads_thread_post"),
            path("<uuid:pk>/act/", view(self.act_view), name="threads_thread_act"),
            path("<uuid:pk>/transcript/", view(self.transcript_view), name="threads_thread_transcript"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        thread = self.get_object(request, unquote(object_id))
        if thread is not None and self.has_view_or_change_permission(request, thread):
            extra_context = {**(extra_context or {}), **self.console_context(request, thread)}
        return super().change_view(request, object_id, form_url, extra_context)

    def console_context(self, request, thread: Thread) -> dict:
        entries = console.page_before(thread_id=thread.pk, before_seq=thread.last_seq + 1)
        can_act = self.has_change_permission(request, thread)
        config = {
            "threadId": str(thread.pk),
            "status": thread.status,
            "lastSeq": entries[-1].seq if entries else 0,
            "firstSeq": entries[0].seq if entries else thread.last_seq + 1,
            "wsPath": f"/ws/console/?thread={thread.pk}",
            "transcriptUrl": reverse("admin:threads_thread_transcript", args=[thread.pk]),
            "postUrl": reverse("admin:threads_thread_post", args=[thread.pk]),
            "canPost": can_act,
        }
        return {
            "title": thread.topic,
            "subtitle": None,
            "thread": thread,
            "entries": entries,
            "participants": console.participants(thread=thread),
            "human_requests": console.human_queue(thread_id=thread.pk)[0],
            "overdue": console.overdue_queue(thread_id=thread.pk),
            "can_act": can_act,
            "post_form": HumanPostForm(),
            "open_states": Thread.OPEN_STATES,
            "console_config": config,
            "console_config_json": json.dumps(config),
        }

    def transcript_view(self, request, pk):
        """Earlier messages, by seq: the `size` messages before `before`."""
        thread = get_object_or_404(Thread, pk=pk)
        if not self.has_view_or_change_permission(request, thread):
            return JsonResponse({"error": "You may not view this thread."}, status=403)
        try:
            before = max(1, int(request.GET.get("before", thread.last_seq + 1)))
        except ValueError:
            return JsonResponse({"error": "before must be a seq."}, status=400)
        entries = console.page_before(thread_id=thread.pk, before_seq=before)
        return JsonResponse(
            {
                "messages": [console.entry_payload(e) for e in entries],
                "first_seq": entries[0].seq if entries else before,
                "has_more": bool(entries) and entries[0].seq > 1,
            }
        )

    def post_view(self, request, pk):
        """Let a human post into the thread (role `user`); it wakes the waiting agents."""
        thread = get_object_or_404(Thread, pk=pk)
        wants_json = request.headers.get("Accept", "").startswith("application/json")
        if not self.has_change_permission(request, thread):
            if wants_json:
                return JsonResponse({"ok": False, "error": "You may not post in this thread."}, status=403)
            self.message_user(request, "You may not post in this thread.", messages.ERROR)
            return redirect("admin:threads_thread_change", pk)
        form = HumanPostForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                message = services.post_human_message(
                    thread=thread,
                    content=form.cleaned_data["content"],
                    author_name=request.user.get_username(),
                    human_only=form.cleaned_data["human_only"],
                    priority=form.chosen_priority(),
                    reply_to_msg_id=str(answering) if (answering := form.cleaned_data["reply_to_msg_id"]) else None,
                )
            except ProtocolError as error:
                form.add_error("content", error.message)
            else:
                replied = f" in reply to #{message.reply_to.seq}" if message.reply_to_id else ""
                self.log_change(request, thread, f"Posted message #{message.seq}{replied}.")
                if wants_json:
                    return JsonResponse({"ok": True, "seq": message.seq})
                self.message_user(request, f"Posted message #{message.seq}.", messages.SUCCESS)
                return redirect("admin:threads_thread_change", pk)
        if wants_json:
            errors = [str(e) for field_errors in form.errors.values() for e in field_errors]
            return JsonResponse({"ok": False, "error": " ".join(errors) or "Nothing to post."}, status=400)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "thread": thread,
            "form": form,
            "title": f"Post to {thread}",
        }
        return TemplateResponse(request, "admin/threads/thread/post_message.html", context)

    def act_view(self, request, pk):
        """Close, archive, reopen or move a thread from its page, through the ops' own functions."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        thread = get_object_or_404(Thread, pk=pk)
        if not self.has_change_permission(request, thread):
            self.message_user(request, "You may not change this thread.", messages.ERROR)
            return redirect("admin:threads_thread_change", pk)
        action = request.POST.get("action")
        try:
            if action == "close":
                summary = request.POST.get("summary", "").strip() or None
                self._act(
                    request,
                    thread,
                    lambda t: services.close_thread(thread_id=t.pk, summary=summary, staff_user=request.user),
                    "Closed",
                )
            elif action == "archive":
                self._act(
                    request,
                    thread,
                    lambda t: services.archive_thread(thread_id=t.pk, staff_user=request.user),
                    "Archived",
                )
            elif action in ("reopen", "state"):
                state = request.POST.get("state") or Thread.Status.DISCUSS
                self._act(
                    request,
                    thread,
                    lambda t: services.set_thread_state(thread_id=t.pk, state=state, staff_user=request.user),
                    f"Moved to {state}:",
                )
            elif action == "dismiss":
                dismissed = services.dismiss_request(
                    msg_id=request.POST.get("msg_id", ""),
                    reason=request.POST.get("reason", ""),
                    staff_user=request.user,
                    thread_id=thread.pk,
                )
                seq = dismissed.message.seq
                self.log_change(
                    request, thread, f"Dismissed the request for a human in message #{seq}: {dismissed.reason}"
                )
                self.message_user(request, f"Dismissed the request in #{seq}.", messages.SUCCESS)
                return redirect("admin:threads_thread_change", pk)
            else:
                self.message_user(request, "Unknown action.", messages.ERROR)
                return redirect("admin:threads_thread_change", pk)
        except ProtocolError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.message_user(request, f"The thread is {Thread.objects.get(pk=pk).status}.", messages.SUCCESS)
        return redirect("admin:threads_thread_change", pk)

    def _act(self, request, thread: Thread, action, verb: str) -> Thread:
        """Run one domain action (which announces the new status) and record it in the admin history."""
        changed = action(thread)
        self.log_change(request, changed, f"{verb} the thread (status {changed.status}).")
        return changed

    # --- list columns ---------------------------------------------------------------

    @admin.display(description="last message", ordering="updated_at")
    def last_message(self, thread: Thread) -> str:
        if not thread.last_seq:
            return "—"
        return format_html(
            '<span class="preview">{}: {}</span> <time title="{}">{}</time>',
            thread.last_author,
            Truncator(thread.last_preview or "").chars(80),
            thread.last_message_at.isoformat() if thread.last_message_at else "",
            timezone.localtime(thread.last_message_at).strftime("%Y-%m-%d %H:%M:%S") if thread.last_message_at else "",
        )

    @admin.display(description="messages", ordering="last_seq")
    def message_count(self, thread: Thread) -> int:
        return thread.last_seq  # seq is gap-free, so the last seq is the count

    @admin.display(description="participants")
    def participant_count(self, thread: Thread) -> int:
        return getattr(thread, "participant_total", 0)

    @admin.display(description="waiting now")
    def waiting_now(self, thread: Thread) -> int:
        return getattr(thread, "waiting_now", 0)

    def _apply(self, request, queryset, action, verb: str) -> None:
        done = 0
        for thread in queryset:
            try:
                self._act(request, thread, action, verb)
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


class UnansweredFilter(admin.SimpleListFilter):
    title = "human reply"
    parameter_name = "unanswered"

    def lookups(self, request, model_admin):
        return [("urgent", "Urgent, no human reply yet")]

    def queryset(self, request, queryset):
        if self.value() == "urgent":
            return queryset.filter(pk__in=console.unanswered_urgent())
        return queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["thread_link", "seq", "author_label", "role", "priority", "preview", "created_at"]
    list_filter = ["role", "priority", UnansweredFilter, "created_at"]
    list_select_related = ["thread", "author"]
    search_fields = ["content", "author_name", "thread__topic"]
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

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a thread's history changes only through the domain

    def get_queryset(self, request):
        # The list shows a preview: never load whole 64 KB bodies for a page of rows.
        return super().get_queryset(request).defer("content").annotate(content_head=Substr("content", 1, 100))

    @admin.display(description="thread", ordering="thread__topic")
    def thread_link(self, message: Message) -> str:
        url = reverse("admin:threads_thread_change", args=[message.thread_id])
        return format_html('<a href="{}#msg-{}">{}</a>', url, message.seq, message.thread.topic)

    @admin.display(description="author", ordering="author_name")
    def author_label(self, message: Message) -> str:
        return agent_label(message.author) if message.author else f"{message.author_name} (staff)"

    @admin.display(description="content")
    def preview(self, message: Message) -> str:
        return Truncator(message.content_head).chars(80)


@admin.register(ThreadTemplate)
class ThreadTemplateAdmin(admin.ModelAdmin):
    """Templates agents list with template_list and apply with thread_create; the built-ins come from a migration."""

    list_display = ["id", "name", "description", "created_at"]
    search_fields = ["id", "name", "description"]


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    """Each agent's cursors in each thread, for debugging sync and delivery problems. Read-only."""

    list_display = [
        "agent",
        "thread",
        "delivered_seq",
        "delivered_at",
        "seen_seq",
        "last_post_seq",
        "owed_seq",
        "owed_since",
        "joined_at",
    ]
    list_filter = ["joined_at"]
    list_select_related = ["agent", "thread"]
    search_fields = ["agent__name", "thread__topic"]
    fields = [*list_display, "tokens_void_before"]
    readonly_fields = fields
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
