"""Shared fixtures and the rules for database-specific tests.

- `requires_postgresql` tests skip on SQLite; with PATTERM_REQUIRE_POSTGRESQL=1 (the PostgreSQL run
  of `make test`) they fail instead, so CI cannot pass without them.
- `requires_sqlite_file` tests (concurrency on the file database) skip on PostgreSQL.
- Transactional tests end with Django's `flush`, which the audit table's append-only triggers
  refuse; the triggers are dropped for the flush and installed again right after.
"""

import datetime
import os

import pytest
from django.db import connections
from django.test import Client, TransactionTestCase

from audit import triggers

# The staff pages' world (fixture `staff_world`), shared by the apps' test_staff_views.py.
pytest_plugins = ["patterm.tests.staff_world"]


def pytest_configure(config):
    original_teardown = TransactionTestCase._fixture_teardown

    def _fixture_teardown(self):
        aliases = list(self._databases_names(include_mirrors=False))
        for alias in aliases:
            triggers.drop_all(connections[alias])
        try:
            original_teardown(self)
        finally:
            for alias in aliases:
                triggers.install_all(connections[alias])

    TransactionTestCase._fixture_teardown = _fixture_teardown


def pytest_runtest_setup(item):
    vendor = connections["default"].vendor
    if item.get_closest_marker("requires_postgresql") and vendor != "postgresql":
        if os.environ.get("PATTERM_REQUIRE_POSTGRESQL") == "1":
            pytest.fail("PATTERM_REQUIRE_POSTGRESQL=1 but the database is not PostgreSQL")
        pytest.skip("needs PostgreSQL (runs in the PostgreSQL pass of `make test`)")
    if item.get_closest_marker("requires_sqlite_file") and vendor != "sqlite":
        pytest.skip("needs the file SQLite database (runs in the SQLite pass of `make test`)")


@pytest.fixture
def api_client():
    return Client()


@pytest.fixture
def make_patient(db):
    """Register a patient through the real sign-up service; returns the IssuedToken."""
    from accounts.services import ClientInfo
    from vault.services import patient_register

    counter = iter(range(1, 10_000))

    def make(**overrides):
        number = next(counter)
        fields = {
            "email": f"patient{number}@example.com",
            "password": "Lange-Reise-2026",
            "first_name": "Erika",
            "last_name": "Mustermann",
            "date_of_birth": datetime.date(1984, 8, 12),
            "client": ClientInfo(address="127.0.0.1", user_agent="pytest"),
        }
        fields.update(overrides)
        return patient_register(**fields)

    return make


@pytest.fixture
def sent_mails(mailoutbox):
    """Run the appointment e-mails' sender once (what `manage.py send_mails` does, decision
    0022) and return every mail sent in this test so far (Django's locmem outbox)."""
    from booking.outbox import mails_send

    def send():
        mails_send()
        return mailoutbox

    return send
