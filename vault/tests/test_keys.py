"""Master key ring and per-patient data keys (vault/keys.py)."""

import base64
import datetime
import os

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from accounts.models import User
from vault import keys
from vault.crypto import DecryptionError, KeyDestroyed
from vault.fields import ERASED
from vault.models import PatientKey, PatientProfile


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


KEY_1 = os.urandom(32)
KEY_2 = os.urandom(32)
KEY_3 = os.urandom(32)


def test_first_entry_is_the_active_version_and_every_entry_reads(settings):
    settings.PATTERM_MASTER_KEYS = f"3:{_b64(KEY_3)}, 2:{_b64(KEY_2)} ,1:{_b64(KEY_1)},"
    ring = keys.master_key_ring()
    assert ring.active_version == 3
    assert (ring.key(3), ring.key(2), ring.key(1)) == (KEY_3, KEY_2, KEY_1)
    with pytest.raises(DecryptionError, match="master key version 4 is not configured"):
        ring.key(4)


def test_the_ring_follows_the_setting(settings):
    settings.PATTERM_MASTER_KEYS = f"1:{_b64(KEY_1)}"
    assert keys.master_key_ring().active_version == 1
    settings.PATTERM_MASTER_KEYS = f"2:{_b64(KEY_2)},1:{_b64(KEY_1)}"
    assert keys.master_key_ring().active_version == 2


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(" , ,", id="only-separators"),
        pytest.param("1:not*base64!", id="bad-base64"),
        pytest.param(f"1:{_b64(KEY_1)[:-2]}", id="bad-padding"),
        pytest.param(f"1:{_b64(KEY_1[:16])}", id="16-byte-key"),
        pytest.param(f"1:{_b64(KEY_1 + b'x')}", id="33-byte-key"),
        pytest.param("1:", id="no-key"),
        pytest.param(_b64(KEY_1), id="no-version"),
        pytest.param(f"v1:{_b64(KEY_1)}", id="non-numeric-version"),
        pytest.param(f"0:{_b64(KEY_1)}", id="version-zero"),
        pytest.param(f"-1:{_b64(KEY_1)}", id="negative-version"),
        pytest.param(f"1:{_b64(KEY_1)},1:{_b64(KEY_2)}", id="duplicate-version"),
        pytest.param(f"2:{_b64(KEY_2)},1:bad", id="second-entry-bad"),
        pytest.param(f"1:{_b64(KEY_1)},2:{_b64(KEY_2)}", id="oldest-first"),
    ],
)
def test_invalid_master_keys_refuse_to_start(settings, value):
    settings.PATTERM_MASTER_KEYS = value
    with pytest.raises(ImproperlyConfigured, match="PATTERM_MASTER_KEYS") as raised:
        keys.master_key_ring()
    # The message points at the setting but never repeats key material into a log.
    for key in (KEY_1, KEY_2):
        assert _b64(key)[:8] not in str(raised.value)


@pytest.mark.django_db
def test_a_bad_setting_stops_sign_up_instead_of_storing_an_unprotected_key(settings, make_patient):
    settings.PATTERM_MASTER_KEYS = "1:short"
    with pytest.raises(ImproperlyConfigured, match="PATTERM_MASTER_KEYS"):
        make_patient()
    # The account was already written when the key failed: sign-up is one transaction.
    assert not User.objects.exists()
    assert not PatientKey.objects.exists()
    assert not PatientProfile.objects.exists()


@pytest.mark.django_db
def test_data_key_wrapped_under_v1_still_unwraps_after_v2_is_added(settings, make_patient):
    settings.PATTERM_MASTER_KEYS = f"1:{_b64(KEY_1)}"
    old = make_patient(first_name="Ida", date_of_birth=datetime.date(1950, 1, 2))
    old_key = PatientKey.objects.get(patient=old.user)
    assert old_key.master_key_version == 1
    data_key_before = keys.data_key(old_key.pk, old.user.pk)
    wrapped_before = bytes(old_key.wrapped_key)

    settings.PATTERM_MASTER_KEYS = f"2:{_b64(KEY_2)},1:{_b64(KEY_1)}"
    assert keys.data_key(old_key.pk, old.user.pk) == data_key_before
    profile = PatientProfile.objects.get(pk=old.user.pk)
    assert profile.first_name == "Ida"
    assert profile.date_of_birth == datetime.date(1950, 1, 2)
    # New values of the old patient are still written with the same data key.
    profile.last_name = "Neu"
    profile.save()
    assert PatientProfile.objects.get(pk=old.user.pk).last_name == "Neu"
    # Adding a version rewraps nothing by itself (that is the rotation command's job).
    old_key.refresh_from_db()
    assert old_key.master_key_version == 1
    assert bytes(old_key.wrapped_key) == wrapped_before

    new = make_patient(first_name="Jan")
    new_key = PatientKey.objects.get(patient=new.user)
    assert new_key.master_key_version == 2
    assert PatientProfile.objects.get(pk=new.user.pk).first_name == "Jan"
    # The new data key really sits under KEY_2: a ring without version 1 still opens it.
    settings.PATTERM_MASTER_KEYS = f"2:{_b64(KEY_2)}"
    assert len(keys.data_key(new_key.pk, new.user.pk)) == 32


@pytest.mark.django_db
def test_removing_a_master_key_version_makes_its_values_unreadable(settings, make_patient):
    settings.PATTERM_MASTER_KEYS = f"1:{_b64(KEY_1)}"
    old = make_patient()
    settings.PATTERM_MASTER_KEYS = f"2:{_b64(KEY_2)},1:{_b64(KEY_1)}"
    new = make_patient()

    settings.PATTERM_MASTER_KEYS = f"2:{_b64(KEY_2)}"
    with pytest.raises(DecryptionError, match="master key version 1 is not configured"):
        PatientProfile.objects.get(pk=old.user.pk).first_name  # noqa: B018
    assert PatientProfile.objects.get(pk=new.user.pk).first_name == "Erika"


@pytest.mark.django_db
def test_another_key_under_the_same_version_number_is_refused(settings, make_patient):
    settings.PATTERM_MASTER_KEYS = f"1:{_b64(KEY_1)}"
    patient = make_patient()
    settings.PATTERM_MASTER_KEYS = f"1:{_b64(KEY_2)}"
    with pytest.raises(DecryptionError, match="authentication failed"):
        PatientProfile.objects.get(pk=patient.user.pk).first_name  # noqa: B018


@pytest.mark.django_db
def test_a_wrapped_key_is_bound_to_its_patient_and_master_version(settings, make_patient):
    settings.PATTERM_MASTER_KEYS = f"2:{_b64(KEY_2)},1:{_b64(KEY_1)}"
    anna, ben = make_patient(first_name="Anna"), make_patient(first_name="Ben")
    anna_key = PatientKey.objects.get(patient=anna.user)
    ben_key = PatientKey.objects.get(patient=ben.user)

    # Anna's wrapped key copied into Ben's row does not open under Ben's context.
    PatientKey.objects.filter(pk=ben_key.pk).update(wrapped_key=anna_key.wrapped_key)
    with pytest.raises(DecryptionError, match="authentication failed"):
        keys.data_key(ben_key.pk, ben.user.pk)
    # A value may only name a data key of its own patient.
    with pytest.raises(DecryptionError, match="another patient"):
        keys.data_key(anna_key.pk, ben.user.pk)

    # Relabelling the master version does not help either, though both versions are present.
    PatientKey.objects.filter(pk=anna_key.pk).update(master_key_version=1)
    with pytest.raises(DecryptionError, match="authentication failed"):
        keys.data_key(anna_key.pk, anna.user.pk)
    PatientKey.objects.filter(pk=anna_key.pk).update(master_key_version=2)
    assert PatientProfile.objects.get(pk=anna.user.pk).first_name == "Anna"


@pytest.mark.django_db
def test_a_destroyed_data_key_reads_as_erased_and_encrypts_nothing(make_patient):
    patient = make_patient()
    PatientKey.objects.filter(patient=patient.user).update(
        wrapped_key=None, destroyed_at=timezone.now()
    )
    profile = PatientProfile.objects.get(pk=patient.user.pk)
    assert profile.first_name is ERASED
    assert profile.date_of_birth is ERASED
    profile.last_name = "Neu"
    with pytest.raises(KeyDestroyed, match="destroyed"):
        profile.save()


# --- The live key brought by the rows' own query (the record page) ---------------------------


def _entries_with_keys(queryset, **kwargs):
    from vault.models import RecordEntry

    assert queryset.model is RecordEntry
    rows = list(keys.with_live_data_key(queryset, **kwargs).order_by("created_at"))
    keys.data_keys_from_rows(rows)
    return rows


@pytest.mark.django_db
@pytest.mark.parametrize("one_patient", [False, True])
def test_a_page_of_rows_brings_its_key_and_opens_without_another_query(
    make_patient, django_assert_num_queries, one_patient
):
    from accounts.tests.factories import ClinicFactory, StaffFactory
    from vault.models import RecordEntry
    from vault.tests.factories import record_entry_write

    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    patient = make_patient().user
    for title in ("A", "B", "C"):
        record_entry_write(author=author, patient=patient, clinic=clinic, title=title)
    kwargs = {"patient_id": patient.pk} if one_patient else {}
    with keys.request_key_cache():
        with django_assert_num_queries(1):  # the entries, their key with them
            rows = _entries_with_keys(RecordEntry.objects.filter(patient=patient), **kwargs)
        with django_assert_num_queries(0):
            assert sorted(row.title for row in rows) == ["A", "B", "C"]


@pytest.mark.django_db
def test_the_one_patient_key_is_not_taken_for_another_patients_row(
    make_patient, django_assert_num_queries
):
    """`patient_id` says whose key the query brings; a row of someone else that the filter let
    through gets no key from it: its values are opened with its own key, looked up."""
    from accounts.tests.factories import ClinicFactory, StaffFactory
    from vault.models import RecordEntry
    from vault.tests.factories import record_entry_write

    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    anna, ben = make_patient().user, make_patient().user
    record_entry_write(author=author, patient=anna, clinic=clinic, title="Anna")
    record_entry_write(author=author, patient=ben, clinic=clinic, title="Ben")
    with keys.request_key_cache():
        rows = _entries_with_keys(
            RecordEntry.objects.filter(patient__in=[anna, ben]), patient_id=anna.pk
        )
        annas, bens = rows
        with django_assert_num_queries(0):
            assert annas.title == "Anna"
        with django_assert_num_queries(1):  # Ben's key, by the id his value names
            assert bens.title == "Ben"
        # Nor is it taken for the key Ben's new values are sealed with: erasing Ben must
        # destroy every key his values need.
        assert keys.current_data_key(ben.pk)[0] == PatientKey.objects.get(patient=ben).pk
