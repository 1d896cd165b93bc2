from django.db import migrations

from audit import triggers


def install(apps, schema_editor):
    triggers.install(schema_editor.connection)


def drop(apps, schema_editor):
    triggers.drop(schema_editor.connection)


class Migration(migrations.Migration):
    """Refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) on the audit table, for every client."""

    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(install, drop)]
