from django.db import migrations

from audit import triggers


def install(apps, schema_editor):
    triggers.install(schema_editor.connection, triggers.CHECKPOINTS)


def drop(apps, schema_editor):
    triggers.drop(schema_editor.connection, triggers.CHECKPOINTS)


class Migration(migrations.Migration):
    """Checkpoints are append-only like the events they sign."""

    dependencies = [("audit", "0003_checkpoints")]

    operations = [migrations.RunPython(install, drop)]
