"""
Requests for a human: an agent's post with `metadata.needs_human: true`.

Each one waits in the console's queue (oldest first) until a staff user
answers it (a human post with `reply_to_msg_id` pointing at it, see
`post_human_message`) or dismisses it with a reason. With
`AGENTCHAT["NOTIFY_ADMINS"]`, Django's `mail_admins` sends one short mail per
new request, after the post commits, from a thread of its own: a slow or
failing mail server never delays or fails the post.
"""

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import mail_admins
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import Truncator

from agentchat.errors import BadRequest, NotFound
from threads import events
from threads.models import HumanRequest, Message

logger = logging.getLogger("agentchat.requests")

# Characters of the question quoted in the mail.
MAIL_QUOTE_CHARS = 500
MAX_REASON_CHARS = 2000

_mailer: ThreadPoolExecutor | None = None


def open_request(message: Message) -> HumanRequest:
    """Queue a request for a human (inside the post's transaction); mail the admins after commit."""
    request = HumanRequest.objects.create(message=message, thread_id=message.thread_id, created_at=message.created_at)
    if settings.AGENTCHAT["NOTIFY_ADMINS"]:
        transaction.on_commit(lambda: _send_later(message))
    return request


def open_request_for(*, msg_id: str, thread_id: Any = None) -> HumanRequest | None:
    """The open request of a message (in this thread), if it has one; its row is locked until the transaction ends."""
    requests = HumanRequest.objects.select_for_update(of=("self",)).select_related("message")
    if thread_id is not None:
        requests = requests.filter(thread_id=thread_id)
    try:
        return requests.filter(message_id=msg_id, resolved_at__isnull=True).first()
    except (ValidationError, ValueError):  # not a message id at all
        return None


def resolve(request: HumanRequest, *, answer: Message, by: str, now: datetime) -> None:
    """Mark a request answered by a staff message (inside that post's transaction)."""
    request.resolved_at, request.resolution = now, HumanRequest.Resolution.ANSWERED
    request.answer, request.resolved_by = answer, by[:150]
    request.save(update_fields=["resolved_at", "resolution", "answer", "resolved_by"])


@transaction.atomic
def dismiss_request(*, msg_id: str, reason: str, staff_user, thread_id: Any = None) -> HumanRequest:
    """Take a request out of the queue without an answer; the reason is kept (and logged by the caller)."""
    reason = (reason or "").strip()
    if not reason:
        raise BadRequest("Give a reason to dismiss the request.", field="reason")
    if len(reason) > MAX_REASON_CHARS:
        raise BadRequest(f"The reason is longer than {MAX_REASON_CHARS} characters.", field="reason")
    request = open_request_for(msg_id=msg_id, thread_id=thread_id)
    if request is None:
        raise NotFound("request", "No open request for a human on this message.")
    request.resolved_at, request.resolution = timezone.now(), HumanRequest.Resolution.DISMISSED
    request.reason, request.resolved_by = reason, staff_user.get_username()[:150]
    request.save(update_fields=["resolved_at", "resolution", "reason", "resolved_by"])
    thread_id = request.thread_id
    transaction.on_commit(lambda: events.broadcast_activity(thread_id=thread_id))
    return request


# --- mail --------------------------------------------------------------------------


def request_mail(message: Message) -> tuple[str, str]:
    """The subject and body of the mail about a new request."""
    thread = message.thread
    url = reverse("admin:threads_thread_change", args=[thread.pk]) + f"#msg-{message.seq}"
    subject = f"{message.author_name} needs a human in “{Truncator(thread.topic).chars(60)}”"
    body = (
        f"{message.author_name} asks for a decision in thread “{thread.topic}” (message #{message.seq}):\n\n"
        f"{Truncator(message.content).chars(MAIL_QUOTE_CHARS)}\n\n"
        f"Answer or dismiss it in the console: {url}\n"
    )
    return subject, body


def _send_later(message: Message) -> Future | None:
    """Hand the mail to the mail thread (the text is built here: that thread never touches the database)."""
    global _mailer
    try:
        subject, body = request_mail(message)
        if _mailer is None:
            _mailer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentchat-mail")
        return _mailer.submit(_send, subject, body)
    except Exception:
        logger.warning("Could not queue the mail for a request for a human", exc_info=True)
        return None


def _send(subject: str, body: str) -> None:
    try:
        mail_admins(subject, body)
    except Exception:
        logger.warning("Could not mail the admins about a request for a human", exc_info=True)


def mail_sent() -> None:
    """Wait until every mail queued so far was handed to the mail backend (for tests and shutdown)."""
    if _mailer is not None:
        _mailer.submit(lambda: None).result(timeout=30)
