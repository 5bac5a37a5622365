import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F


def creators_administer(apps, schema_editor):
    """Existing threads are administered by their creators."""
    Thread = apps.get_model("threads", "Thread")
    Thread.objects.filter(administrator__isnull=True).update(administrator=F("creator"))


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0001_initial"),
        ("threads", "0002_edits_reactions_search_templates"),
    ]

    operations = [
        migrations.AddField(
            model_name="thread",
            name="administrator",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="administered_threads",
                to="agents.agent",
            ),
        ),
        migrations.AddIndex(
            model_name="thread",
            index=models.Index(fields=["creator", "created_at"], name="thread_creator_created"),
        ),
        migrations.RunPython(creators_administer, migrations.RunPython.noop),
    ]
