"""SECURITY.md P5 under a race: one TOTP code and one recovery code, tried by many requests at the
same instant, each sign in exactly once. Real transactions, one connection per thread, started by
a barrier; PostgreSQL (row lock) in its pass, the file SQLite database (BEGIN IMMEDIATE) in its."""

import threading

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from accounts.otp import otp_check
from accounts.tests.factories import StaffFactory
from accounts.tests.test_otp import code_at, enrolled

BOTH_DATABASES = pytest.mark.parametrize(
    "vendor",
    [
        pytest.param("postgresql", marks=pytest.mark.requires_postgresql),
        pytest.param("sqlite", marks=pytest.mark.requires_sqlite_file),
    ],
)
THREADS = 8


def race(user, code) -> list:
    barrier = threading.Barrier(THREADS)
    results, errors = [], []

    def attempt():
        try:
            barrier.wait(timeout=30)
            results.append(otp_check(user=user, code=code))
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == THREADS
    return results


@BOTH_DATABASES
@pytest.mark.django_db(transaction=True)
def test_one_totp_code_tried_at_once_by_many_requests_passes_once(vendor):
    staff = StaffFactory(email="wettlauf@example.com")
    device, _ = enrolled(staff)
    now = timezone.now()

    with time_machine.travel(now, tick=False):
        results = race(staff, code_at(device, now))

    assert results.count("totp") == 1
    assert results.count(None) == THREADS - 1


@BOTH_DATABASES
@pytest.mark.django_db(transaction=True)
def test_one_recovery_code_tried_at_once_by_many_requests_passes_once(vendor):
    staff = StaffFactory(email="wettlauf.code@example.com")
    _, codes = enrolled(staff)

    results = race(staff, codes[0])

    assert results.count("recovery_code") == 1
    assert results.count(None) == THREADS - 1
