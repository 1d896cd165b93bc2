"""Fixtures for the audit tests."""

import pytest
from django.db import connection

from audit import triggers
from audit.tests.helpers import append_varied


@pytest.fixture
def build_chain(db):
    """Append `n` varied events through `event_append`; returns n."""

    def build(n: int) -> int:
        for index in range(1, n + 1):
            append_varied(index)
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
