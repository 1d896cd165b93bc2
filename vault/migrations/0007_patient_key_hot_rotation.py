"""Re-wrapping a data key as a HOT update on PostgreSQL (decision 0019).

The index on master_key_version goes (nothing reads by it: rotation walks the primary key), so
that a re-wrap changes no indexed column; fillfactor 50 leaves each page room for the new
version of its rows, so that PostgreSQL writes it beside the old one and adds no index entry.
The fillfactor applies to pages written from now on; `VACUUM FULL vault_patientkey` applies it
to the keys already stored (docs/key-rotation.md).
"""

from django.db import migrations

FILLFACTOR = 50


def fillfactor(value):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE vault_patientkey SET (fillfactor = {value})")

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("vault", "0006_recordentry_code"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="patientkey",
            name="vault_patie_master__f336f7_idx",
        ),
        migrations.RunPython(fillfactor(FILLFACTOR), fillfactor(100)),
    ]
