from django.db import migrations

# A practitioner's slots never overlap, whoever writes them. PostgreSQL: an exclusion constraint
# over the time range (btree_gist for the equality on practitioner_id). SQLite: triggers.

POSTGRESQL_INSTALL = [
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    """
    ALTER TABLE booking_slot ADD CONSTRAINT slot_no_overlap_per_practitioner
    EXCLUDE USING gist (practitioner_id WITH =, tstzrange(starts_at, ends_at) WITH &&)
    """,
]
POSTGRESQL_DROP = [
    "ALTER TABLE booking_slot DROP CONSTRAINT IF EXISTS slot_no_overlap_per_practitioner",
]

_OVERLAP = """
    EXISTS (SELECT 1 FROM booking_slot AS other
            WHERE other.practitioner_id = NEW.practitioner_id
              AND other.starts_at < NEW.ends_at AND other.ends_at > NEW.starts_at
              {extra})
"""
SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER slot_no_overlap_insert BEFORE INSERT ON booking_slot
    WHEN {_OVERLAP.format(extra="")}
    BEGIN SELECT RAISE(ABORT, 'slot_no_overlap_per_practitioner'); END
    """,
    f"""
    CREATE TRIGGER slot_no_overlap_update
    BEFORE UPDATE OF practitioner_id, starts_at, ends_at ON booking_slot
    WHEN {_OVERLAP.format(extra="AND other.id != NEW.id")}
    BEGIN SELECT RAISE(ABORT, 'slot_no_overlap_per_practitioner'); END
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS slot_no_overlap_insert",
    "DROP TRIGGER IF EXISTS slot_no_overlap_update",
]


def _run(schema_editor, statements):
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    _run(schema_editor, POSTGRESQL_INSTALL if vendor == "postgresql" else SQLITE_INSTALL)


def drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    _run(schema_editor, POSTGRESQL_DROP if vendor == "postgresql" else SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [("booking", "0001_initial")]

    operations = [migrations.RunPython(install, drop)]
