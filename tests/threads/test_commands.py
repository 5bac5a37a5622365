"""manage.py close_idle_threads and purge_reply_tokens (run from cron)."""

from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from threads import services
from threads.models import Thread

# The admin and the console act as a staff user (threads.services.check_administrator).
STAFF = SimpleNamespace(is_active=True, is_staff=True)

pytestmark = pytest.mark.django_db


def run(name, *args, **options):
    out = StringIO()
    call_command(name, *args, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def agent(make_agent):
    return make_agent()[0]


@pytest.fixture
def idle_for(agent):
    """Make a thread whose last activity was `minutes` ago."""

    def make(minutes, *, topic=None, status=Thread.Status.DISCUSS):
        thread, _ = services.create_thread(agent=agent, topic=topic or f"idle {minutes}")
        Thread.objects.filter(pk=thread.pk).update(
            updated_at=timezone.now() - timedelta(minutes=minutes), status=status
        )
        return thread

    return make


def stored(thread):
    return Thread.objects.get(pk=thread.pk)


# --- close_idle_threads ---------------------------------------------------------------


def test_close_idle_threads_is_off_by_default(idle_for):
    thread = idle_for(60 * 24 * 365)

    output = run("close_idle_threads")

    assert stored(thread).status == Thread.Status.DISCUSS
    assert output == "Idle threads are not closed (THREAD_IDLE_TIMEOUT_MINUTES is 0).\n"


def test_close_idle_threads_closes_threads_idle_past_the_limit_only(idle_for):
    idle = idle_for(31)
    busy = idle_for(29)

    output = run("close_idle_threads", "--minutes", "30")

    closed = stored(idle)
    assert closed.status == Thread.Status.CLOSED
    assert closed.closed_at is not None
    assert stored(busy).status == Thread.Status.DISCUSS
    assert stored(busy).closed_at is None
    assert output == "Closed 1 thread(s) idle for more than 30 minute(s).\n"


def test_close_idle_threads_follows_the_setting(agentchat_settings, idle_for):
    agentchat_settings(THREAD_IDLE_TIMEOUT_MINUTES=30)
    idle = idle_for(31)
    busy = idle_for(29)

    output = run("close_idle_threads")

    assert stored(idle).status == Thread.Status.CLOSED
    assert stored(busy).status == Thread.Status.DISCUSS
    assert output.startswith("Closed 1 thread(s)")


def test_close_idle_threads_closes_every_open_state(idle_for):
    threads = [idle_for(90, topic=state, status=state) for state in Thread.OPEN_STATES]

    assert run("close_idle_threads", "--minutes", "60").startswith(f"Closed {len(threads)} thread(s)")
    assert {stored(t).status for t in threads} == {Thread.Status.CLOSED}


def test_close_idle_threads_leaves_closed_and_archived_threads_alone(idle_for):
    closed = idle_for(90, topic="closed", status=Thread.Status.CLOSED)
    archived = idle_for(90, topic="archived", status=Thread.Status.ARCHIVED)
    before = [stored(closed).updated_at, stored(archived).updated_at]

    output = run("close_idle_threads", "--minutes", "60")

    assert output.startswith("Closed 0 thread(s)")
    assert stored(archived).status == Thread.Status.ARCHIVED
    assert [stored(closed).updated_at, stored(archived).updated_at] == before


def test_close_idle_threads_dry_run_changes_nothing(idle_for):
    idle = idle_for(31)

    output = run("close_idle_threads", "--minutes", "30", "--dry-run")

    assert stored(idle).status == Thread.Status.DISCUSS
    assert output == "Would close 1 thread(s) idle for more than 30 minute(s).\n"


def test_close_idle_threads_second_run_changes_nothing(idle_for):
    idle = idle_for(31)
    run("close_idle_threads", "--minutes", "30")
    closed_at = stored(idle).closed_at

    output = run("close_idle_threads", "--minutes", "30")

    assert output.startswith("Closed 0 thread(s)")
    assert stored(idle).closed_at == closed_at


def test_close_idle_threads_refuses_negative_minutes(idle_for):
    idle = idle_for(31)

    with pytest.raises(CommandError):
        run("close_idle_threads", "--minutes", "-1")

    assert stored(idle).status == Thread.Status.DISCUSS


def test_a_thread_closed_as_idle_can_be_reopened(idle_for):
    idle = idle_for(31)
    run("close_idle_threads", "--minutes", "30")

    services.set_thread_state(staff_user=STAFF, thread_id=str(idle.pk), state="discuss")

    assert stored(idle).status == Thread.Status.DISCUSS


# --- purge_reply_tokens ----------------------------------------------------------------


def test_purge_reply_tokens_is_kept_for_crontabs_and_says_tokens_are_no_longer_stored(agent):
    thread, sync = services.create_thread(agent=agent, topic="kept")

    output = run("purge_reply_tokens")
    assert "nothing to purge" in output
    assert "nothing to purge" in run("purge_reply_tokens", "--dry-run")

    # A token issued before it still posts.
    message, _ = services.post_message(
        agent=agent, thread_id=str(thread.pk), content="hi", expected_last_seq=0, reply_token=sync.reply_token
    )
    assert message.seq == 1


def test_close_idle_threads_with_minutes_zero_names_the_option(idle_for, settings):
    settings.AGENTCHAT = {**settings.AGENTCHAT, "THREAD_IDLE_TIMEOUT_MINUTES": 30}
    thread = idle_for(60)

    assert run("close_idle_threads", "--minutes", "0") == "Idle threads are not closed (--minutes is 0).\n"
    assert stored(thread).status == Thread.Status.DISCUSS
    with pytest.raises(CommandError, match="--minutes must not be negative"):
        run("close_idle_threads", "--minutes", "-1")


def test_close_idle_threads_verbose_lists_what_it_closes(idle_for):
    thread = idle_for(60)

    output = run("close_idle_threads", "--minutes", "30", "-v", "2")

    assert f"  {thread.topic} ({thread.pk})\n" in output
