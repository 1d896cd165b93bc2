"""Database triggers that make the audit table append-only, on SQLite and PostgreSQL.

The ORM is not the only way into the database: these refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL, INSERT OR REPLACE over an existing row on SQLite) for every client. The migration
installs them; tests that must wipe or tamper with a copy of the table drop them with `drop()`.
"""

TABLE = "audit_auditevent"

_SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused'); END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused'); END
    """,
    # INSERT OR REPLACE deletes the row it collides with without firing DELETE triggers (unless
    # recursive_triggers is on), so an insert that collides with an existing row is refused.
    f"""
    CREATE TRIGGER IF NOT EXISTS {TABLE}_no_replace BEFORE INSERT ON {TABLE}
    WHEN EXISTS (
        SELECT 1 FROM {TABLE}
        WHERE seq = NEW.seq OR prev_hash = NEW.prev_hash OR hash = NEW.hash
    )
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only: REPLACE refused'); END
    """,  # noqa: S608 (a constant table name, no input)
]
_SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_delete",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_replace",
]

_POSTGRESQL_INSTALL = [
    """
    CREATE OR REPLACE FUNCTION patterm_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    f"""
    CREATE OR REPLACE TRIGGER {TABLE}_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION patterm_audit_append_only()
    """,
    f"""
    CREATE OR REPLACE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION patterm_audit_append_only()
    """,
]
_POSTGRESQL_DROP = [
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update_delete ON {TABLE}",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}",
]


def _statements(connection, *, install: bool) -> list[str]:
    if connection.vendor == "postgresql":
        return _POSTGRESQL_INSTALL if install else _POSTGRESQL_DROP
    if connection.vendor == "sqlite":
        return _SQLITE_INSTALL if install else _SQLITE_DROP
    raise NotImplementedError(f"no append-only triggers for {connection.vendor}")


def install(connection) -> None:
    with connection.cursor() as cursor:
        for statement in _statements(connection, install=True):
            cursor.execute(statement)


def drop(connection) -> None:
    with connection.cursor() as cursor:
        for statement in _statements(connection, install=False):
            cursor.execute(statement)
