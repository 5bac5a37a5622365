"""Thread templates: the built-ins, template_list, template_get, and thread_create with a template."""

import importlib
from pathlib import Path

import pytest
from django.apps import apps as django_apps

import threads.migrations
from agentchat import errors
from tests.support.wire import registered
from threads import selectors, services
from threads.models import Thread, ThreadTemplate

BUILTINS = {"code-review", "security-audit", "architecture", "brainstorm"}
TEMPLATE_KEYS = {"template_id", "name", "description", "system_prompt", "default_metadata", "created_at"}

with_builtins = pytest.mark.django_db
wire = pytest.mark.django_db(transaction=True)
# Found by name, not number, so that renumbering the migration does not break this.
[_builtin_path] = Path(threads.migrations.__file__).parent.glob("*_edits_reactions_search_templates.py")
builtin_migration = importlib.import_module(f"threads.migrations.{_builtin_path.stem}")


@pytest.fixture(autouse=True)
def builtins(django_db_blocker):
    """The built-ins as the data migration creates them.

    The test database is migrated, but transactional tests (here and
    elsewhere) empty every table when they end; run the migration's own
    function again (it leaves existing templates alone).
    """
    with django_db_blocker.unblock():
        builtin_migration.create_builtin_templates(django_apps, None)


@with_builtins
def test_the_migration_creates_the_four_builtins_with_prompt_and_metadata():
    templates = {t.pk: t for t in selectors.list_templates()}
    assert BUILTINS <= set(templates)
    for template_id in BUILTINS:
        template = templates[template_id]
        assert template.name and template.description and template.system_prompt
        assert template.default_metadata["kind"] == template_id


@with_builtins
def test_get_template_finds_one_and_unknown_is_not_found():
    assert selectors.get_template(template_id="brainstorm").name == "Brainstorm"
    with pytest.raises(errors.NotFound) as info:
        selectors.get_template(template_id="no-such-template")
    assert info.value.extra["resource"] == "template"


@with_builtins
def test_create_thread_applies_the_templates_prompt_and_metadata(make_agent):
    agent, _ = make_agent()
    thread, _ = services.create_thread(
        agent=agent, topic="review #12", template_id="code-review", metadata={"pr": 12, "kind": "custom"}
    )
    template = ThreadTemplate.objects.get(pk="code-review")
    assert thread.template_id == "code-review"
    assert thread.system_prompt == template.system_prompt
    # The thread's own metadata wins over the template's defaults.
    assert thread.metadata == {**template.default_metadata, "pr": 12, "kind": "custom"}


@with_builtins
def test_an_explicit_system_prompt_wins_over_the_templates(make_agent):
    agent, _ = make_agent()
    thread, _ = services.create_thread(agent=agent, topic="t", template_id="brainstorm", system_prompt="Mine.")
    assert thread.system_prompt == "Mine."


@with_builtins
def test_create_thread_with_an_unknown_template_is_not_found_and_stores_nothing(make_agent):
    agent, _ = make_agent()
    with pytest.raises(errors.NotFound) as info:
        services.create_thread(agent=agent, topic="t", template_id="no-such-template")
    assert info.value.extra["resource"] == "template"
    assert not Thread.objects.exists()


@with_builtins
def test_custom_templates_are_listed_by_name():
    ThreadTemplate.objects.create(id="aaa-custom", name="Aardvark", system_prompt="Custom.")
    names = [t.name for t in selectors.list_templates()]
    assert names == sorted(names)
    assert "Aardvark" in names


# --- over the wire --------------------------------------------------------------------------


@wire
async def test_template_list_and_get_round_trip(connect):
    client, _ = await registered(connect)
    listed = await client.call("template_list")
    assert BUILTINS <= {t["template_id"] for t in listed["templates"]}
    assert all(set(t) == TEMPLATE_KEYS for t in listed["templates"])

    got = await client.call("template_get", {"template_id": "security-audit"})
    assert set(got) == {"template"}
    assert got["template"]["template_id"] == "security-audit"
    assert got["template"]["default_metadata"]["kind"] == "security-audit"


@wire
async def test_thread_create_with_a_template_over_the_wire(connect):
    client, _ = await registered(connect)
    template = (await client.call("template_get", {"template_id": "architecture"}))["template"]
    created = await client.call("thread_create", {"topic": "design", "template": "architecture"})
    thread = created["thread"]
    assert thread["template_id"] == "architecture"
    assert thread["system_prompt"] == template["system_prompt"]
    assert thread["metadata"] == template["default_metadata"]
    joined = await client.call("bus_connect", {"thread_id": thread["thread_id"]})
    assert joined["system_prompt"].endswith(template["system_prompt"])


@wire
async def test_template_errors_over_the_wire(connect):
    client, _ = await registered(connect)
    error = await client.error("template_get", {"template_id": "no-such-template"})
    assert (error["code"], error["resource"]) == ("NotFound", "template")
    error = await client.error("template_get", {})
    assert (error["code"], error["field"]) == ("BadRequest", "template_id")
    error = await client.error("template_get", {"template_id": "x" * 101})
    assert (error["code"], error["field"]) == ("BadRequest", "template_id")

    error = await client.error("thread_create", {"topic": "t", "template": "no-such-template"})
    assert (error["code"], error["resource"]) == ("NotFound", "template")
    assert (await client.call("thread_list"))["threads"] == []

    anonymous = await connect()
    assert (await anonymous.error("template_list"))["code"] == "Unauthenticated"
