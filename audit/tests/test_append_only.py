"""A5: the database itself refuses UPDATE, DELETE (and TRUNCATE on PostgreSQL) on the audit
table, through the ORM and through raw SQL; the rows stay as they were. The one change allowed is
the integrator's: a staged event's empty leaf index set, nothing else with it."""

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction

from audit import triggers
from audit.models import AuditEvent
from audit.services import chain_verify
from audit.tests.helpers import append_varied, stored_rows

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table


def seq_of(leaf: int) -> int:
    """The real seq of the event at `leaf`: seq comes from a database sequence, which
    PostgreSQL does not restart between tests, so no fixed number names a row."""
    return AuditEvent.objects.values_list("seq", flat=True).get(leaf_index=leaf)


def second() -> int:
    return seq_of(1)


def third() -> int:
    return seq_of(2)


def orm_queryset_update():
    AuditEvent.objects.filter(seq=second()).update(details={"forged": True})


def orm_update_of_every_row():
    AuditEvent.objects.update(actor_id=None)


def orm_bulk_update():
    event = AuditEvent.objects.get(seq=second())
    event.outcome = "failure"
    AuditEvent.objects.bulk_update([event], ["outcome"])


def orm_save_of_a_changed_row():
    event = AuditEvent.objects.get(seq=second())
    event.action = "auth.logout"
    event.save()


def orm_queryset_delete():
    AuditEvent.objects.filter(seq=second()).delete()


def orm_delete_of_every_row():
    AuditEvent.objects.all().delete()


def orm_instance_delete():
    AuditEvent.objects.get(seq=third()).delete()


def raw_update():
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET object_id = %s WHERE seq = %s", ["forged", second()])


def raw_update_of_the_leaf_indices():
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET leaf_index = leaf_index + 100")


def raw_update_back_to_staged():
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET leaf_index = NULL WHERE seq = %s", [second()])


def raw_delete():
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE seq = %s", [second()])


def raw_delete_without_where():
    """SQLite would otherwise take its "truncate optimisation" here."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE}")


def raw_upsert(conflict: str):
    """Insert a row that collides with the third row on `conflict` (seq or leaf_index), as an
    upsert.

    SQLite's INSERT OR REPLACE deletes the colliding row without firing DELETE triggers (unless
    recursive_triggers is on); PostgreSQL's ON CONFLICT DO UPDATE is an UPDATE.
    """
    columns = [field.column for field in AuditEvent._meta.concrete_fields]
    target = third()
    replaced = {
        "details": "'{\"forged\": true}'",
        "seq": str(target + 1000),
        "leaf_index": "NULL",
    }
    del replaced[conflict]
    if connection.vendor == "postgresql":
        replaced["details"] += "::jsonb"
    selected = ", ".join(replaced.get(column, column) for column in columns)
    insert = (
        f"INSERT INTO {TABLE} ({', '.join(columns)}) SELECT {selected} FROM {TABLE} WHERE seq = %s"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(insert.replace("INSERT INTO", "INSERT OR REPLACE INTO", 1), [target])
        else:
            # The leaf index is unique where set (a partial index): the upsert names it so.
            target_index = f"({conflict})" + (
                " WHERE leaf_index IS NOT NULL" if conflict == "leaf_index" else ""
            )
            cursor.execute(
                f"{insert} ON CONFLICT {target_index} DO UPDATE SET details = EXCLUDED.details",
                [target],
            )


ATTEMPTS = [
    orm_queryset_update,
    orm_update_of_every_row,
    orm_bulk_update,
    orm_save_of_a_changed_row,
    orm_queryset_delete,
    orm_delete_of_every_row,
    orm_instance_delete,
    raw_update,
    raw_update_of_the_leaf_indices,
    raw_update_back_to_staged,
    raw_delete,
    raw_delete_without_where,
]


def assert_refused(attempt) -> DatabaseError:
    # On PostgreSQL a failed statement aborts the transaction: each attempt gets a savepoint.
    with pytest.raises(DatabaseError) as refused, transaction.atomic():
        attempt()
    return refused.value


def assert_unchanged(before: list[dict]) -> None:
    with transaction.atomic():
        assert stored_rows() == before
    assert chain_verify().ok


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda attempt: attempt.__name__)
def test_changing_or_removing_rows_is_refused_by_the_database(build_chain, attempt):
    build_chain(5)
    before = stored_rows()

    error = assert_refused(attempt)

    assert "append-only" in str(error)
    assert_unchanged(before)


@pytest.mark.parametrize("conflict", ["seq", "leaf_index"])
def test_an_upsert_cannot_replace_a_row(build_chain, conflict):
    build_chain(5)
    before = stored_rows()

    error = assert_refused(lambda: raw_upsert(conflict))

    assert "append-only" in str(error)
    assert_unchanged(before)


def test_appending_still_works_after_refused_attempts(build_chain):
    build_chain(3)
    for attempt in ATTEMPTS:
        assert_refused(attempt)

    build_chain(1)  # appends and integrates a fourth row after the three

    result = chain_verify()
    assert (result.ok, result.events_checked) == (True, 4)


@pytest.mark.requires_postgresql
@pytest.mark.parametrize("statement", [f"TRUNCATE {TABLE}", f"TRUNCATE TABLE {TABLE} CASCADE"])
def test_truncate_is_refused_on_postgresql(build_chain, statement):
    build_chain(5)
    before = stored_rows()

    def truncate():
        with connection.cursor() as cursor:
            cursor.execute(statement)

    error = assert_refused(truncate)

    assert "append-only" in str(error)
    assert_unchanged(before)


def test_dropped_triggers_let_changes_through_and_install_restores_the_refusal(build_chain):
    """The triggers are what refuses: without them the same UPDATE passes (the tamper tests rely
    on this), and installing them again refuses it again."""
    build_chain(3)
    triggers.drop(connection)
    try:
        raw_update()
        assert AuditEvent.objects.get(seq=second()).object_id == "forged"
    finally:
        triggers.install(connection)

    assert "append-only" in str(assert_refused(raw_delete))
    assert AuditEvent.objects.count() == 3


def test_the_integrator_s_one_change_is_allowed_and_nothing_else_with_it(build_chain):
    build_chain(2)
    staged = append_varied(3)
    with connection.cursor() as cursor:
        for change in ("object_id = 'forged', ", "details = details, outcome = 'failure', "):
            with pytest.raises(DatabaseError), transaction.atomic():
                cursor.execute(
                    f"UPDATE {TABLE} SET {change}leaf_index = 2 WHERE seq = %s", [staged.seq]
                )
        cursor.execute(f"UPDATE {TABLE} SET leaf_index = 2 WHERE seq = %s", [staged.seq])
    assert AuditEvent.objects.get(seq=staged.seq).leaf_index == 2
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(seq=staged.seq).update(leaf_index=5)


def test_an_event_cannot_be_inserted_with_a_leaf_index(build_chain):
    build_chain(1)
    event = AuditEvent.objects.get()
    event.seq, event.leaf_index = None, 7
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.save(force_insert=True)


def _changed(column: str, value):
    """Another value of `column` than `value` (NULL for a set value, a value for NULL)."""
    if column == "seq":
        return value + 10**9
    if column == "occurred_at":
        return value + timedelta(microseconds=1)
    if column == "details":
        return {**value, "forged": True}
    if column == "client_address":
        return None if value else "10.9.9.9"
    if column in ("actor_id", "clinic_id"):
        return None if value is not None else 77
    if column in ("prev_hash", "hash"):
        return None if value else "f" * 64
    return value + "x"


@pytest.mark.parametrize("column", triggers.EVENT_FIXED_COLUMNS)
def test_setting_the_leaf_index_cannot_change_any_other_column(build_chain, column):
    """The integrator's UPDATE passes only when every column but the leaf index stays as it was,
    byte for byte, NULL as NULL: each column changed along with it, in either direction between
    NULL and a value, is refused."""
    build_chain(2)
    staged = append_varied(1)
    before = AuditEvent.objects.filter(seq=staged.seq).values(*triggers.EVENT_FIXED_COLUMNS)[0]
    change = {column: _changed(column, before[column]), "leaf_index": 2}
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq=staged.seq).update(**change)
    after = AuditEvent.objects.filter(seq=staged.seq).values(
        *triggers.EVENT_FIXED_COLUMNS, "leaf_index"
    )
    assert after[0] == {**before, "leaf_index": None}
