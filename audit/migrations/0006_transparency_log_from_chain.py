"""The events of the hash chain become the tree's first leaves, in their order.

Leaf i is event #i+1 (the chain's sequence numbers have no gaps); their `prev_hash` and `hash`
stay, so the chain and its old checkpoints keep verifying. Then the append-only triggers of all
four tables are installed (the events' allowing the integrator's one change).
"""

from django.db import migrations

from audit import tlog, triggers
from audit.chain import HASHED_FIELDS, canonical_json
from audit.verify_export import TreeBuilder

CHUNK = 5000


def chain_to_leaves(apps, schema_editor):
    connection = schema_editor.connection
    event_model = apps.get_model("audit", "AuditEvent")
    tree_hash_model = apps.get_model("audit", "AuditTreeHash")
    triggers.drop(connection, triggers.EVENTS)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET leaf_index = seq - 1 WHERE hash IS NOT NULL")
    builder, stored, pending = TreeBuilder(), 0, []
    rows = event_model.objects.filter(leaf_index__isnull=False).order_by("leaf_index")
    for values in rows.values_list(*HASHED_FIELDS).iterator(chunk_size=CHUNK):
        leaf = canonical_json(dict(zip(HASHED_FIELDS, values, strict=True))).encode()
        for hashed in builder.append(leaf):
            pending.append(tree_hash_model(id=stored, hash=hashed))
            stored += 1
        if len(pending) >= CHUNK:
            tree_hash_model.objects.bulk_create(pending)
            pending = []
    tree_hash_model.objects.bulk_create(pending)
    if stored != tlog.stored_hash_count(builder.size):
        raise RuntimeError("the tree's stored hashes do not add up: nothing was migrated")


def leaves_to_chain(apps, schema_editor):
    connection = schema_editor.connection
    triggers.drop_all(connection)
    apps.get_model("audit", "AuditTreeHash").objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET leaf_index = NULL")


def triggers_install(apps, schema_editor):
    triggers.install_all(schema_editor.connection)


def triggers_drop(apps, schema_editor):
    for table in (triggers.TREE_HASHES, triggers.TREE_CHECKPOINTS):
        triggers.drop(schema_editor.connection, table)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_transparency_log_schema")]

    operations = [
        migrations.RunPython(chain_to_leaves, leaves_to_chain),
        migrations.RunPython(triggers_install, triggers_drop),
    ]
