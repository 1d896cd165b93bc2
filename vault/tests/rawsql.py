"""Read and write stored values behind the ORM's back, the way an attacker or a dump sees them."""

from django.db import connection

from vault.models import PatientProfile


def _names(column: str) -> tuple[str, str, str]:
    quote = connection.ops.quote_name
    meta = PatientProfile._meta
    return quote(meta.db_table), quote(column), quote(meta.pk.column)


def profile_column(patient_id: int, column: str):
    """The stored value of one column of a patient's profile, as the database holds it."""
    table, column, pk = _names(column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {pk} = %s", [patient_id])
        (value,) = cursor.fetchone()
    return value


def profile_column_set(patient_id: int, column: str, value) -> None:
    table, column, pk = _names(column)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", [value, patient_id])
        assert cursor.rowcount == 1
