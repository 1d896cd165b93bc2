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

import struct
from collections.abc import Callable
from contextlib import contextmanager
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections

try:  # the format a cursor returns its results in; psycopg only on PostgreSQL
    from psycopg.adapt import Dumper
    from psycopg.postgres import types as _pg_types
    from psycopg.pq import Format

    _BINARY = Format.BINARY
except ImportError:  # pragma: no cover (SQLite-only installs)
    _BINARY = Dumper = _pg_types = None

# SQLite takes at most 32,766 parameters in one statement.
SQLITE_MAX_PARAMETERS = 30_000


def rows_update(
    model,
    field_names: list[str],
    rows: list[tuple],
    *,
    prepared: bool = False,
    unchanged: tuple[str, ...] = (),
) -> int:
    """Set `field_names` of each row `(pk, value, ...)` of `model`; returns the rows updated.

    Values are Python values as the model holds them, prepared by their fields as a save
    prepares them (an encrypted field takes only sealed values). `prepared=True` says they
    already are what the database stores (integers, bytes, text as read from it): no field
    is asked, which for a rotation batch of 2,000 keys saves 6,000 calls (about 3 ms).

    `unchanged`: fields whose stored value each row must still have, given after the new values
    (`(pk, value, ..., expected, ...)`): a row changed since it was read is left as it is and
    not counted, decided by the database under the row's lock (a compare-and-set).
    """
    return rows_update_sent(model, field_names, rows, prepared=prepared, unchanged=unchanged)()


def rows_update_sent(
    model,
    field_names: list[str],
    rows: list[tuple],
    *,
    prepared: bool = False,
    unchanged: tuple[str, ...] = (),
) -> Callable[[], int]:
    """`rows_update`, sent: the callable it returns waits for the statement and returns the
    rows updated. Inside `pipelined()` on PostgreSQL the server runs the statement while the
    caller goes on (a rotation re-wraps the next batch meanwhile); elsewhere it has run."""
    if not rows:
        return lambda: 0
    connection = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the per-thread proxy
    meta, quote = model._meta, connection.ops.quote_name
    fields = [
        meta.pk,
        *(meta.get_field(name) for name in field_names),
        *(meta.get_field(name) for name in unchanged),
    ]
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
    assigned = len(field_names) + 1
    assignments = ", ".join(
        f"{quote(field.column)} = v.column{position}"
        for position, field in enumerate(fields[1:assigned], start=2)
    )
    # The compare-and-set, NULL-safe: an expected NULL matches a NULL.
    same = "IS NOT DISTINCT FROM" if connection.vendor == "postgresql" else "IS"
    conditions = "".join(
        f" AND {table}.{quote(field.column)} {same} v.column{position}"
        for position, field in enumerate(fields[assigned:], start=assigned + 1)
    )
    if connection.vendor == "postgresql":
        bounds = [min(columns[0]), max(columns[0])]
        # `%b`: each array as one binary parameter of the bound statement.
        db_types = [field.cast_db_type(connection) for field in fields]
        arrays = ", ".join(f"%b::{db_type}[]" for db_type in db_types)
        # Values as stored by now (prepared by their fields, or given so): packed in C.
        columns = [
            _packed(values, db_type) for values, db_type in zip(columns, db_types, strict=True)
        ]
        names = ", ".join(f"column{position}" for position in range(1, len(fields) + 1))
        cursor = _server_binding_cursor(connection)
        try:
            # The bounds let the planner read the batch's range of the primary key index; on
            # the join alone it hashed the whole table for each batch (bench/keys.py).
            cursor.execute(
                f"UPDATE {table} SET {assignments} "  # noqa: S608 (names come from the model)
                f"FROM unnest({arrays}) AS v({names}) WHERE {table}.{pk_column} = v.column1 "
                f"AND {table}.{pk_column} BETWEEN %s AND %s{conditions}",
                [*columns, *bounds],
            )
        except BaseException:
            cursor.close()
            raise

        def updated() -> int:
            try:
                if connection.connection.pgconn.pipeline_status:
                    # Entering the open pipeline again and leaving it syncs it: every result
                    # sent so far, this statement's among them, is in.
                    with connection.connection.pipeline():
                        pass
                return cursor.rowcount
            finally:
                cursor.close()

        return updated
    with connection.cursor() as cursor:
        prepared = list(zip(*columns, strict=True))
        if connection.Database.sqlite_version_info < (3, 33):
            setters = ", ".join(f"{quote(field.column)} = %s" for field in fields[1:assigned])
            checks = "".join(f" AND {quote(field.column)} IS %s" for field in fields[assigned:])
            cursor.executemany(
                f"UPDATE {table} SET {setters} WHERE {pk_column} = %s{checks}",  # noqa: S608
                [(*values[1:assigned], values[0], *values[assigned:]) for values in prepared],
            )
            count = cursor.rowcount
            return lambda: count
        row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
        per_statement = max(1, SQLITE_MAX_PARAMETERS // len(fields))
        count = 0
        for start in range(0, len(prepared), per_statement):
            chunk = prepared[start : start + per_statement]
            cursor.execute(
                f"UPDATE {table} SET {assignments} "  # noqa: S608 (names come from the model)
                f"FROM (VALUES {', '.join([row_sql] * len(chunk))}) AS v "
                f"WHERE {table}.{pk_column} = v.column1{conditions}",
                [value for values in chunk for value in values],
            )
            count += cursor.rowcount
        return lambda: count


@contextmanager
def pipelined():
    """On PostgreSQL, the block's statements are sent without waiting for each one's result
    (psycopg's pipeline mode): a result is waited for when it is fetched, or by the callable
    of `rows_update_sent`. Elsewhere statements run one by one, as always. Leaving the block
    waits for everything sent in it; open it inside the transaction, not around it."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    with connection.connection.pipeline():
        yield


class _PackedArray:
    """A one-dimensional array without NULLs, already in PostgreSQL's binary array format;
    one subclass per element type (`_packed_array_type`), whose `oid` is the array type's."""

    __slots__ = ("data",)
    oid = 0

    def __init__(self, data: bytes):
        self.data = data


@cache
def _packed_array_type(element: str) -> type:
    return type(f"_Packed_{element}", (_PackedArray,), {"oid": _pg_types[element].array_oid})


if Dumper is not None:

    class _PackedArrayDumper(Dumper):
        format = _BINARY

        def __init__(self, cls, context=None):
            super().__init__(cls, context)
            self.oid = cls.oid  # psycopg makes one dumper per class: per element type

        def dump(self, obj):
            return obj.data


# Integer columns as stored: (struct code, size, element type name).
_PACKED_INTEGERS = {
    "bigint": ("q", 8, "int8"),
    "integer": ("i", 4, "int4"),
    "smallint": ("h", 2, "int2"),
}
_PACKED_BYTES = {"bytea": "bytea", "text": "text"}


def _packed(values: list, db_type: str):
    """`values` (one column of a batch, as stored) as one binary array parameter, packed in
    a few C calls instead of psycopg's dumping element by element: for a rotation batch of
    2,000 keys psycopg's dumping of the arrays was about 2 ms of Python (bench/keys.py;
    decision 0019, fourth round). A column of another type, with a NULL or with a value that
    does not pack (a float, text in a `bytea` column) is left to psycopg, which dumps or
    refuses it as before."""
    count = len(values)
    try:
        if (integer := _PACKED_INTEGERS.get(db_type)) is not None:
            code, size, element = integer
            # Each element: its length (int32) and the value, both big-endian.
            items = [size] * (2 * count)
            items[1::2] = values
            body = struct.pack(">" + ("i" + code) * count, *items)
        elif (element := _PACKED_BYTES.get(db_type)) is not None:
            if element == "text":
                values = [value.encode() for value in values]
            lengths = set(map(len, values))
            parts = [b""] * (2 * count)
            if len(lengths) == 1:  # wrapped keys: all 60 bytes, one length prefix for all
                parts[0::2] = [struct.pack(">i", lengths.pop())] * count
            else:
                parts[0::2] = [struct.pack(">i", len(value)) for value in values]
            parts[1::2] = values
            body = b"".join(parts)
        else:
            return values
    except (TypeError, AttributeError, struct.error):  # NULL, or not what the column stores
        return values
    element_type = _pg_types[element]
    # ndim, has NULLs, element type, then the one dimension's length and lower bound.
    header = struct.pack(">iiIii", 1, 0, element_type.oid, count, 1)
    return _packed_array_type(element)(header + body)


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
    cursor.adapters.register_dumper(_PackedArray, _PackedArrayDumper)
    if binary_results:
        cursor.format = _BINARY
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)
