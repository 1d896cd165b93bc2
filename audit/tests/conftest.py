"""Fixtures for the audit tests."""

import pytest
from django.db import connection

from audit import triggers
from audit.integrator import integrate_pending
from audit.tests.helpers import append_varied


@pytest.fixture
def build_chain(db):
    """Append `n` varied events through `event_append` and integrate them (test transactions
    run no on-commit hooks, so the inline integration of SQLite does not run); returns n."""

    def build(n: int, *, integrate: bool = True) -> int:
        for index in range(1, n + 1):
            append_varied(index)
        if integrate:
            integrate_pending()
        return n

    return build


@pytest.fixture
def triggers_dropped(db):
    """Tamper with "a copy": the append-only triggers are dropped inside this test's transaction
    (which is rolled back at the end) and installed again explicitly, so that later tests always
    find them in place."""
    triggers.drop(connection)
    yield
    triggers.install(connection)
