"""Database triggers that make the audit tables append-only, on SQLite and PostgreSQL.

The ORM is not the only way into the database: these refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL, INSERT OR REPLACE over an existing row on SQLite) for every client. Migrations
install them per table; tests that must wipe or tamper with a copy drop them with `drop()`.

The events table allows exactly one change: the integrator setting a staged event's empty
`leaf_index`, every other column unchanged. An event cannot be inserted with a leaf index (it
would skip the integrator), and an index once set never changes.
"""

from audit.chain import HASHED_FIELDS

EVENTS = "audit_auditevent"
CHECKPOINTS = "audit_checkpoint"
TREE_HASHES = "audit_tree_hash"
TREE_CHECKPOINTS = "audit_tree_checkpoint"

# Each append-only table with the unique columns an INSERT OR REPLACE could collide on.
APPEND_ONLY_TABLES = {
    EVENTS: ("seq", "leaf_index", "prev_hash", "hash"),
    CHECKPOINTS: ("id", "head_seq"),
    TREE_HASHES: ("id",),
    TREE_CHECKPOINTS: ("id", "tree_size"),
}
# The events' columns besides `leaf_index`, which the one allowed UPDATE must leave as they are:
# the hashed ones and the old chain's two.
EVENT_FIXED_COLUMNS = (*HASHED_FIELDS, "prev_hash", "hash")

# The integrator's UPDATE passes when it only sets an empty leaf index: the new row with its
# leaf index emptied again must be the old row's binary image (`*=`: every column byte for byte,
# NULL as NULL). Comparing `to_jsonb` of both rows, as before, held the same and cost ten times
# as much per integrated event (bench/audit.py, decision 0018).
_POSTGRESQL_INTEGRATE_ONLY = f"""
    CREATE OR REPLACE FUNCTION patterm_audit_integrate_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        unchanged {EVENTS}%ROWTYPE;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF NEW.leaf_index IS NULL THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'audit log is append-only: an event is staged without a leaf index'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF TG_OP = 'UPDATE' AND OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL THEN
            unchanged := NEW;
            unchanged.leaf_index := NULL;
            IF unchanged *= OLD THEN
                RETURN NEW;
            END IF;
        END IF;
        RAISE EXCEPTION 'audit log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
"""

_POSTGRESQL_FUNCTION = """
    CREATE OR REPLACE FUNCTION patterm_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
"""


def _sqlite_install(table: str) -> list[str]:
    collision = " OR ".join(f"{column} = NEW.{column}" for column in APPEND_ONLY_TABLES[table])
    integration = ""
    extra = []
    if table == EVENTS:
        unchanged = " AND ".join(f"NEW.{column} IS OLD.{column}" for column in EVENT_FIXED_COLUMNS)
        integration = (
            f"WHEN NOT (OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL AND {unchanged})"
        )
        extra = [
            f"""
            CREATE TRIGGER IF NOT EXISTS {table}_staged_only BEFORE INSERT ON {table}
            WHEN NEW.leaf_index IS NOT NULL
            BEGIN SELECT RAISE(ABORT, 'audit log is append-only: staged without a leaf index'); END
            """
        ]
    return [
        *extra,
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} {integration}
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END
        """,
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused'); END
        """,
        # INSERT OR REPLACE deletes the row it collides with without firing DELETE triggers
        # (unless recursive_triggers is on), so an insert that collides is refused.
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_no_replace BEFORE INSERT ON {table}
        WHEN EXISTS (SELECT 1 FROM {table} WHERE {collision})
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only: REPLACE refused'); END
        """,  # noqa: S608 (constant table and column names, no input)
    ]


def _sqlite_drop(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_{kind}"
        for kind in ("no_update", "no_delete", "no_replace", "staged_only")
    ]


def _has_leaf_index(connection) -> bool:
    """Whether the events table has its tree column yet: migrations before 0005 install the
    triggers on the old chain's table, where the staging trigger's condition could not name it."""
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, EVENTS)
    return any(column.name == "leaf_index" for column in columns)


def _postgresql_install(table: str, connection) -> list[str]:
    if table == EVENTS and _has_leaf_index(connection):
        return [
            _POSTGRESQL_FUNCTION,
            _POSTGRESQL_INTEGRATE_ONLY,
            f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}",
            f"""
            CREATE OR REPLACE TRIGGER {table}_integrate_only
            BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION patterm_audit_integrate_only()
            """,
            # Staging calls no function: the condition is evaluated by the server itself, and
            # only an event inserted with a leaf index reaches the function (which refuses it).
            f"""
            CREATE OR REPLACE TRIGGER {table}_staged_only
            BEFORE INSERT ON {table}
            FOR EACH ROW WHEN (NEW.leaf_index IS NOT NULL)
            EXECUTE FUNCTION patterm_audit_integrate_only()
            """,
            f"""
            CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION patterm_audit_append_only()
            """,
        ]
    return [
        _POSTGRESQL_FUNCTION,
        f"""
        CREATE OR REPLACE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION patterm_audit_append_only()
        """,
        f"""
        CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION patterm_audit_append_only()
        """,
    ]


def _postgresql_drop(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_integrate_only ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_staged_only ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
    ]


def _statements(connection, table: str, *, install: bool) -> list[str]:
    if connection.vendor == "postgresql":
        return _postgresql_install(table, connection) if install else _postgresql_drop(table)
    if connection.vendor == "sqlite":
        return _sqlite_install(table) if install else _sqlite_drop(table)
    raise NotImplementedError(f"no append-only triggers for {connection.vendor}")


def _execute(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(connection, table: str = EVENTS) -> None:
    _execute(connection, _statements(connection, table, install=True))


def drop(connection, table: str = EVENTS) -> None:
    _execute(connection, _statements(connection, table, install=False))


def install_all(connection) -> None:
    for table in APPEND_ONLY_TABLES:
        install(connection, table)


def drop_all(connection) -> None:
    for table in APPEND_ONLY_TABLES:
        drop(connection, table)
