"""Builders for the vault's tests: record entries written through the real service, and stored
values read and written behind the ORM's back, the way a dump or an attacker sees them."""

from django.db import connection

from accounts.models import Clinic, User
from vault.models import RecordCategory, RecordEntry
from vault.services import record_entry_create


def record_entry_write(
    *,
    author: User,
    patient: User,
    clinic: Clinic,
    category: str = RecordCategory.DIAGNOSIS,
    title: str = "Hypertonie",
    body: str = "Blutdruck 150/95, Kontrolle in vier Wochen.",
    code: str | None = None,
) -> RecordEntry:
    """An entry as a practitioner writes it (encrypted, audited)."""
    return record_entry_create(
        actor=author,
        patient=patient,
        clinic=clinic,
        category=category,
        title=title,
        body=body,
        code=code,
    )


def _sql_names(model, column: str) -> tuple[str, str, str]:
    quote = connection.ops.quote_name
    meta = model._meta
    return quote(meta.db_table), quote(model._meta.get_field(column).column), quote(meta.pk.column)


def _pk_param(model, pk):
    return model._meta.pk.get_db_prep_value(pk, connection)


def stored_value(model, pk, column: str):
    """One column of one row as the database holds it (an envelope for encrypted columns)."""
    table, column_name, pk_column = _sql_names(model, column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column_name} FROM {table} WHERE {pk_column} = %s", [_pk_param(model, pk)]
        )
        (value,) = cursor.fetchone()
    return value


def stored_value_set(model, pk, column: str, value) -> None:
    table, column_name, pk_column = _sql_names(model, column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {column_name} = %s WHERE {pk_column} = %s",
            [value, _pk_param(model, pk)],
        )
        assert cursor.rowcount == 1


def stored_entry_values(patient: User) -> dict:
    """{(entry id, column): stored envelope} for every entry of the patient."""
    return {
        (entry_id, column): stored_value(RecordEntry, entry_id, column)
        for entry_id in RecordEntry.objects.filter(patient=patient).values_list("pk", flat=True)
        for column in ("title", "body")
    }
