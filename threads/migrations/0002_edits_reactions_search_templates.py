"""Edits with history, reactions, the full-text search index, and the built-in thread templates.

The search index depends on the database: on PostgreSQL a generated
`tsvector` column with a GIN index (computed by the database on every INSERT
and UPDATE of a message), on SQLite an FTS5 table written by
threads.search.index_message. Both are filled for the messages already stored.
The template texts are copied here, not imported, so that this migration
always creates the same rows.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

# Must match threads.search (PG_CONFIG, PG_VECTOR_COLUMN, PG_INDEX, SQLITE_FTS_TABLE).
PG_CONFIG = "english"
PG_VECTOR_COLUMN = "search_vector"
PG_INDEX = "message_search_vector_gin"
SQLITE_FTS_TABLE = "threads_message_fts"


def create_search_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE threads_message ADD COLUMN {PG_VECTOR_COLUMN} tsvector "
            f"GENERATED ALWAYS AS (to_tsvector('{PG_CONFIG}'::regconfig, content)) STORED"
        )
        schema_editor.execute(f"CREATE INDEX {PG_INDEX} ON threads_message USING gin ({PG_VECTOR_COLUMN})")
    elif connection.vendor == "sqlite":
        schema_editor.execute(f"CREATE VIRTUAL TABLE {SQLITE_FTS_TABLE} USING fts5(msg_id UNINDEXED, content)")
        schema_editor.execute(
            f"INSERT INTO {SQLITE_FTS_TABLE} (msg_id, content) SELECT id, content FROM threads_message"
        )


def drop_search_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {PG_INDEX}")
        schema_editor.execute(f"ALTER TABLE threads_message DROP COLUMN IF EXISTS {PG_VECTOR_COLUMN}")
    elif connection.vendor == "sqlite":
        schema_editor.execute(f"DROP TABLE IF EXISTS {SQLITE_FTS_TABLE}")


BUILTIN_TEMPLATES = [
    {
        "id": "code-review",
        "name": "Code review",
        "description": "Review a change: correctness first, then tests, then style.",
        "system_prompt": (
            "This thread reviews one change. The author posts the change (a diff or a link and a summary). "
            "Reviewers read all of it before posting, then report findings as a list, each with a file and "
            "line, a severity (blocker, major, minor, nit) and a concrete fix. Check correctness and edge "
            "cases first, then tests, then naming and style. Do not repeat a finding another reviewer has "
            "posted; agree or disagree with it instead. The author answers each finding. End with a clear "
            "verdict: approve, or request changes with the blockers listed."
        ),
        "default_metadata": {"kind": "code-review", "severity_levels": ["blocker", "major", "minor", "nit"]},
    },
    {
        "id": "security-audit",
        "name": "Security audit",
        "description": "Audit code or a design for vulnerabilities, ranked by risk.",
        "system_prompt": (
            "This thread audits a system for security problems. State the scope and the trust boundaries "
            "first. Look for injection, broken authentication and authorization, secrets in code or logs, "
            "unsafe deserialization, missing input validation, race conditions and vulnerable dependencies. "
            "Report each finding with its location, an attack scenario, its impact and likelihood (critical, "
            "high, medium, low) and a remediation. Never paste real secrets, tokens or keys into the thread. "
            "Close with the findings ranked by risk."
        ),
        "default_metadata": {"kind": "security-audit", "severity_levels": ["critical", "high", "medium", "low"]},
    },
    {
        "id": "architecture",
        "name": "Architecture",
        "description": "Design a system or a change to one and record the decision.",
        "system_prompt": (
            "This thread designs a system or a significant change. Start from the requirements and "
            "constraints (load, data, failure modes, team, deadlines). Propose at least two options, each "
            "with its components, data flow and trade-offs, and say what would make you pick each. Challenge "
            "assumptions with specific scenarios. Converge on one option and record the decision, its "
            "reasons, the alternatives rejected and the open questions, as an architecture decision record."
        ),
        "default_metadata": {"kind": "architecture", "deliverable": "decision-record"},
    },
    {
        "id": "brainstorm",
        "name": "Brainstorm",
        "description": "Generate many ideas first, then group, judge and pick.",
        "system_prompt": (
            "This thread collects ideas. In the first round, post as many distinct ideas as you can, one "
            "short paragraph each, and build on others' ideas rather than judging them. In the second "
            "round, group similar ideas and name the groups. In the third, rate the strongest ideas for "
            "value and effort, and end with a short list of the ideas to pursue and their next steps."
        ),
        "default_metadata": {"kind": "brainstorm", "rounds": ["diverge", "group", "converge"]},
    },
]


def create_builtin_templates(apps, schema_editor):
    ThreadTemplate = apps.get_model("threads", "ThreadTemplate")
    for template in BUILTIN_TEMPLATES:
        # An existing template with the same id (made in the admin) is left as it is.
        ThreadTemplate.objects.get_or_create(id=template["id"], defaults=template)


def delete_builtin_templates(apps, schema_editor):
    ThreadTemplate = apps.get_model("threads", "ThreadTemplate")
    ThreadTemplate.objects.filter(id__in=[template["id"] for template in BUILTIN_TEMPLATES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0001_initial"),
        ("threads", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="MessageEdit",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.PositiveIntegerField()),
                ("old_content", models.TextField()),
                ("editor_name", models.CharField(max_length=200)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "editor_agent",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="message_edits",
                        to="agents.agent",
                    ),
                ),
                (
                    "editor_user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="message_edits",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "message",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="edits", to="threads.message"
                    ),
                ),
            ],
            options={
                "ordering": ["message", "version"],
                "constraints": [
                    models.UniqueConstraint(fields=("message", "version"), name="messageedit_message_version_unique")
                ],
            },
        ),
        migrations.CreateModel(
            name="Reaction",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reaction", models.CharField(max_length=32)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "agent",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="reactions", to="agents.agent"
                    ),
                ),
                (
                    "message",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="reactions", to="threads.message"
                    ),
                ),
            ],
            options={
                "ordering": ["message", "created_at", "id"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("message", "agent", "reaction"), name="reaction_message_agent_unique"
                    )
                ],
            },
        ),
        migrations.RunPython(create_search_index, drop_search_index),
        migrations.RunPython(create_builtin_templates, delete_builtin_templates),
    ]
