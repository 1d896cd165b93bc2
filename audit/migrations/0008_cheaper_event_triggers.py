"""The events' append-only triggers in their cheaper form (decision 0018): staging calls no
function (a `WHEN` the server evaluates), and the integrator's one allowed UPDATE is checked by
comparing the rows' binary images instead of two `to_jsonb` documents. What they refuse is
unchanged (audit/tests/test_append_only.py)."""

from django.db import migrations

from audit import triggers


def triggers_reinstall(apps, schema_editor):
    triggers.install(schema_editor.connection, triggers.EVENTS)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0007_partial_unique_indexes"),
    ]

    # Backwards: the triggers stay (they refuse what the earlier ones refused).
    operations = [migrations.RunPython(triggers_reinstall, migrations.RunPython.noop)]
