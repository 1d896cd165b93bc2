"""Many rows updated in one statement, each with its own values.

Key rotation rewrites thousands of rows. `bulk_update` builds a `CASE` over the whole batch
(1.6 ms per key in bench/keys.py), one `UPDATE` per row costs a round trip each; this sends one
statement per batch and lets the database join the rows to their new values:

- PostgreSQL: `UPDATE ... FROM unnest($1::bigint[], $2::integer[], ...)`, one array parameter
  per column, so the statement stays small whatever the batch (a `VALUES` list of the same rows
  took twice as long), and the rows' smallest and largest key, so that only that range of the
  table is read. The arrays travel bound and in binary, not quoted into the statement as
  Django's client-side binding does: quoting 2,000 wrapped keys as hex text and PostgreSQL
  parsing them back was half of a rotation batch's `UPDATE` (bench/keys.py, decision 0019);
- SQLite 3.33 or later: `UPDATE ... FROM (VALUES (...), ...)`; an older SQLite gets one
  statement per row.
"""

from django.db import DEFAULT_DB_ALIAS, connections

try:  # the format a cursor returns its results in; psycopg only on PostgreSQL
    from psycopg.pq import Format

    _BINARY = Format.BINARY
except ImportError:  # pragma: no cover (SQLite-only installs)
    _BINARY = None

# SQLite takes at most 32,766 parameters in one statement.
SQLITE_MAX_PARAMETERS = 30_000


def rows_update(model, field_names: list[str], rows: list[tuple], *, prepared: bool = False) -> int:
    """Set `field_names` of each row `(pk, value, ...)` of `model`; returns the rows updated.

    Values are Python values as the model holds them, prepared by their fields as a save
    prepares them (an encrypted field takes only sealed values). `prepared=True` says they
    already are what the database stores (integers, bytes, text as read from it): no field
    is asked, which for a rotation batch of 2,000 keys saves 6,000 calls (about 3 ms).
    """
    if not rows:
        return 0
    connection = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the per-thread proxy
    meta, quote = model._meta, connection.ops.quote_name
    fields = [meta.pk, *(meta.get_field(name) for name in field_names)]
    table, pk_column = quote(meta.db_table), quote(meta.pk.column)
    if prepared:
        columns = [list(values) for values in zip(*rows, strict=True)]
        if len(columns) != len(fields):
            raise ValueError(f"rows of {len(columns)} values for {len(fields)} columns")
    else:
        columns = [
            [field.get_db_prep_save(value, connection) for value in values]
            for field, values in zip(fields, zip(*rows, strict=True), strict=True)
        ]
    assignments = ", ".join(
        f"{quote(field.column)} = v.column{position}"
        for position, field in enumerate(fields[1:], start=2)
    )
    if connection.vendor == "postgresql":
        # `%b`: each array as one binary parameter of the bound statement.
        arrays = ", ".join(f"%b::{field.cast_db_type(connection)}[]" for field in fields)
        names = ", ".join(f"column{position}" for position in range(1, len(fields) + 1))
        with _server_binding_cursor(connection) as cursor:
            # The bounds let the planner read the batch's range of the primary key index; on
            # the join alone it hashed the whole table for each batch (bench/keys.py).
            cursor.execute(
                f"UPDATE {table} SET {assignments} "  # noqa: S608 (names come from the model)
                f"FROM unnest({arrays}) AS v({names}) WHERE {table}.{pk_column} = v.column1 "
                f"AND {table}.{pk_column} BETWEEN %s AND %s",
                [*columns, min(columns[0]), max(columns[0])],
            )
            return cursor.rowcount
    with connection.cursor() as cursor:
        prepared = list(zip(*columns, strict=True))
        if connection.Database.sqlite_version_info < (3, 33):
            setters = ", ".join(f"{quote(field.column)} = %s" for field in fields[1:])
            cursor.executemany(
                f"UPDATE {table} SET {setters} WHERE {pk_column} = %s",  # noqa: S608
                [(*values[1:], values[0]) for values in prepared],
            )
            return len(prepared)
        row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
        per_statement = max(1, SQLITE_MAX_PARAMETERS // len(fields))
        updated = 0
        for start in range(0, len(prepared), per_statement):
            chunk = prepared[start : start + per_statement]
            cursor.execute(
                f"UPDATE {table} SET {assignments} "  # noqa: S608 (names come from the model)
                f"FROM (VALUES {', '.join([row_sql] * len(chunk))}) AS v "
                f"WHERE {table}.{pk_column} = v.column1",
                [value for values in chunk for value in values],
            )
            updated += cursor.rowcount
        return updated


def rows_read(queryset) -> list[tuple]:
    """The rows of a `values_list()` queryset as plain tuples, as stored.

    On PostgreSQL the ORM's own statement (same filters, lock and order) goes through a
    server-binding cursor that returns binary results: integers and `bytea` arrive as they are
    stored, with no hex text to decode and no ORM iteration per row (a rotation batch of 2,000
    keys; bench/keys.py). Elsewhere, and for a queryset whose fields convert what they read,
    the queryset itself.
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql" or queryset.query.annotations:
        return list(queryset)
    sql, params = queryset.query.sql_with_params()
    with _server_binding_cursor(connection, binary_results=True) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _server_binding_cursor(connection, *, binary_results: bool = False):
    """A cursor of Django's connection (same transaction, same query log and execute wrappers
    as `connection.cursor()`) that sends parameters bound, not quoted into the statement.

    Django's psycopg 3 backend binds on the client unless `server_side_binding` is set for the
    whole database; this one statement needs the other kind, so it takes a cursor of that kind
    on the same connection.
    """
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(connection.connection)
    if binary_results:
        cursor.format = _BINARY
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)
