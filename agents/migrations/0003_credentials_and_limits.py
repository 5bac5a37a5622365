import re

from django.db import migrations, models


def seed_name_counters(apps, schema_editor):
    """Start each IDE and model pair's counter at the highest number its names already use."""
    Agent = apps.get_model("agents", "Agent")
    AgentNameCounter = apps.get_model("agents", "AgentNameCounter")
    highest: dict[str, int] = {}
    for ide, model, name in Agent.objects.values_list("ide", "model", "name").iterator():
        base = f"{ide} ({model})"
        if name == base:
            number = 1
        else:
            match = re.fullmatch(re.escape(base) + r" (\d+)", name)
            if match is None:
                continue
            number = int(match.group(1))
        highest[base] = max(highest.get(base, 0), number)
    AgentNameCounter.objects.bulk_create(
        [AgentNameCounter(base=base, last_number=number) for base, number in highest.items()]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0002_token_hash_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="AgentNameCounter",
            fields=[
                ("base", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("last_number", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name="agent",
            name="credential_generation",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="agent",
            name="registered_from",
            field=models.CharField(blank=True, editable=False, max_length=100),
        ),
        migrations.AddIndex(
            model_name="agent",
            index=models.Index(fields=["registered_from", "registered_at"], name="agent_registered_from"),
        ),
        migrations.RunPython(seed_name_counters, migrations.RunPython.noop),
    ]
