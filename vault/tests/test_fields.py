"""Encrypted model fields (vault/fields.py) on the real database: storage, reuse, moves (E2)."""

import base64
import datetime

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from vault import crypto
from vault.crypto import DecryptionError
from vault.models import PatientKey, PatientProfile
from vault.tests.rawsql import profile_column, profile_column_set

pytestmark = pytest.mark.django_db

ENCRYPTED = ("first_name", "last_name", "date_of_birth")
REFUSED_FIRST_NAME = r"^PatientProfile\.first_name is encrypted"
REFUSED_DATE_OF_BIRTH = r"^PatientProfile\.date_of_birth is encrypted"


def _profile(issued) -> PatientProfile:
    """A fresh instance, loaded from the database."""
    return PatientProfile.objects.get(pk=issued.user.pk)


def _stored(issued) -> dict[str, str]:
    return {column: profile_column(issued.user.pk, column) for column in ENCRYPTED}


def test_values_round_trip_through_the_database(make_patient):
    patient = make_patient(
        first_name="Zoë Ångström",
        last_name="Groß-Öztürk 李",
        date_of_birth=datetime.date(1950, 2, 28),
    )
    profile = _profile(patient)
    assert profile.first_name == "Zoë Ångström"
    assert profile.last_name == "Groß-Öztürk 李"
    assert profile.date_of_birth == datetime.date(1950, 2, 28)
    assert type(profile.date_of_birth) is datetime.date


def test_stored_values_are_envelopes_without_the_plaintext(make_patient):
    patient = make_patient(
        first_name="Hildegard", last_name="Wunderlich", date_of_birth=datetime.date(1961, 7, 30)
    )
    key_id = PatientKey.objects.get(patient=patient.user).pk
    stored = _stored(patient)
    plaintexts = {
        "first_name": "Hildegard",
        "last_name": "Wunderlich",
        "date_of_birth": "1961-07-30",
    }
    for column, value in stored.items():
        version, key_text, payload = value.split("$")
        assert (version, key_text) == ("pt1", str(key_id)), column
        sealed = base64.b64decode(payload, validate=True)
        length = len(plaintexts[column].encode())
        assert len(sealed) == crypto.NONCE_SIZE + length + crypto.TAG_SIZE, column
        for plaintext in plaintexts.values():
            assert plaintext not in value
            assert plaintext.encode() not in sealed
    # No plaintext in any SQL the ORM sends either (checked on a save).
    profile = _profile(patient)
    profile.first_name = "Hildegard"
    with CaptureQueriesContext(connection) as queries:
        profile.save()
    assert queries.captured_queries
    assert not any("Hildegard" in query["sql"] for query in queries.captured_queries)


def test_the_same_plaintext_is_sealed_differently_every_time(make_patient):
    anna = make_patient(first_name="Anna", last_name="Anna")
    ben = make_patient(first_name="Anna")
    first = _stored(anna)
    assert first["first_name"] != first["last_name"]  # same text, two columns
    assert first["first_name"] != _stored(ben)["first_name"]  # same text, two patients

    profile = _profile(anna)
    profile.first_name = "Anna"  # the same value assigned again is sealed again
    profile.save()
    second = _stored(anna)
    assert second["first_name"] != first["first_name"]
    assert second["last_name"] == first["last_name"]
    assert _profile(anna).first_name == "Anna"


def test_untouched_values_are_written_back_unchanged(make_patient):
    patient = make_patient()
    before = _stored(patient)

    _profile(patient).save()  # nothing read
    assert _stored(patient) == before

    profile = _profile(patient)
    assert (profile.first_name, profile.last_name) == ("Erika", "Mustermann")  # read, not set
    profile.save()
    profile.save(update_fields=["first_name", "date_of_birth"])
    assert _stored(patient) == before


def test_values_loaded_deferred_or_through_a_relation_stay_sealed_until_read(make_patient):
    """Loaded values are marked sealed by the model's `from_db` (no converter per value):
    also when they come later (a deferred column) or with another model (select_related)."""
    patient = make_patient()
    before = _stored(patient)

    deferred = PatientProfile.objects.only("pk").get(pk=patient.user.pk)
    assert deferred.first_name == "Erika"  # loaded now, then opened
    assert deferred.last_name == "Mustermann"

    from accounts.models import User

    user = User.objects.select_related("patient_profile").get(pk=patient.user.pk)
    user.patient_profile.save()
    assert user.patient_profile.last_name == "Mustermann"
    assert _stored(patient) == before

    # values() and values_list() give the stored text itself, never a plaintext.
    (stored_first_name,) = PatientProfile.objects.filter(pk=patient.user.pk).values_list(
        "first_name", flat=True
    )
    assert stored_first_name == before["first_name"]
    assert "Erika" not in stored_first_name


def test_changing_one_value_reseals_only_that_value(make_patient):
    patient = make_patient()
    before = _stored(patient)
    profile = _profile(patient)
    profile.last_name = "Musterfrau"
    profile.save()
    assert profile.last_name == "Musterfrau"  # the instance still shows plaintext after save
    after = _stored(patient)
    assert after["last_name"] != before["last_name"]
    assert (after["first_name"], after["date_of_birth"]) == (
        before["first_name"],
        before["date_of_birth"],
    )
    fresh = _profile(patient)
    assert (fresh.first_name, fresh.last_name) == ("Erika", "Musterfrau")


def test_a_date_field_takes_only_dates(make_patient):
    profile = _profile(make_patient())
    profile.date_of_birth = "1984-08-12"
    with pytest.raises(TypeError, match="takes a date"):
        profile.save()


@pytest.mark.parametrize(
    "lookup, value",
    [
        ("exact", "Erika"),
        ("iexact", "erika"),
        ("contains", "rik"),
        ("icontains", "RIK"),
        ("startswith", "Eri"),
        ("istartswith", "eri"),
        ("endswith", "ka"),
        ("iendswith", "KA"),
        ("regex", "^E"),
        ("iregex", "^e"),
        ("in", ["Erika"]),
        ("gt", "A"),
        ("gte", "A"),
        ("lt", "Z"),
        ("lte", "Z"),
        ("range", ("A", "Z")),
    ],
)
def test_filtering_on_plaintext_is_refused_before_any_query(make_patient, lookup, value):
    """An encrypted column cannot be searched: a lookup must fail loudly, not quietly send the
    plaintext to the database and come back empty."""
    make_patient()
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(TypeError, match=REFUSED_FIRST_NAME):
            list(PatientProfile.objects.filter(**{f"first_name__{lookup}": value}))
        with pytest.raises(TypeError, match=REFUSED_FIRST_NAME):
            list(PatientProfile.objects.exclude(**{f"first_name__{lookup}": value}))
    assert queries.captured_queries == []


def test_filter_and_update_with_plaintext_raise_type_error(make_patient):
    patient = make_patient()
    before = _stored(patient)
    with pytest.raises(TypeError, match=REFUSED_FIRST_NAME):
        PatientProfile.objects.filter(first_name="x")
    with pytest.raises(TypeError, match=REFUSED_DATE_OF_BIRTH):
        PatientProfile.objects.filter(date_of_birth=datetime.date(1984, 8, 12))
    # update() marks the surrounding transaction for rollback when it fails, as Django does for
    # every failed write; the savepoints keep the test's transaction usable for the checks.
    with pytest.raises(TypeError, match=REFUSED_FIRST_NAME), transaction.atomic():
        PatientProfile.objects.update(first_name="x")
    with pytest.raises(TypeError, match=REFUSED_DATE_OF_BIRTH), transaction.atomic():
        PatientProfile.objects.filter(pk=patient.user.pk).update(
            date_of_birth=datetime.date(2000, 1, 1)
        )
    assert _stored(patient) == before
    # Lookups that send no value stay available.
    assert PatientProfile.objects.filter(first_name__isnull=False).count() == 1


# --- E2: a value moved elsewhere refuses to decrypt ---------------------------------------


def test_value_copied_to_another_patient_is_refused(make_patient):
    anna = make_patient(first_name="Anna")
    ben = make_patient(first_name="Ben")
    original = profile_column(ben.user.pk, "first_name")
    profile_column_set(ben.user.pk, "first_name", profile_column(anna.user.pk, "first_name"))

    profile = _profile(ben)
    with pytest.raises(DecryptionError, match=r"PatientProfile\.first_name") as raised:
        profile.first_name  # noqa: B018
    assert "Anna" not in str(raised.value)
    assert profile.last_name == "Mustermann"  # the row's other values still open

    # Relabelled with Ben's own key id, it is still refused (wrong key and wrong context).
    _, _, payload = profile_column(anna.user.pk, "first_name").split("$")
    ben_key_id = PatientKey.objects.get(patient=ben.user).pk
    profile_column_set(ben.user.pk, "first_name", f"pt1${ben_key_id}${payload}")
    with pytest.raises(DecryptionError, match=r"PatientProfile\.first_name"):
        _profile(ben).first_name  # noqa: B018

    profile_column_set(ben.user.pk, "first_name", original)  # put back, it opens again
    assert _profile(ben).first_name == "Ben"


def test_an_instance_pointed_at_another_row_binds_its_next_reads_to_that_row(make_patient):
    """The row's part of the associated data is kept per instance between reads; pointed at
    another patient's row after a first read, the instance must not reuse it: the values it
    still holds are Anna's, bound to Anna's row, and now refuse to open."""
    anna = make_patient(first_name="Anna")
    ben = make_patient(first_name="Ben")
    profile = _profile(anna)
    assert profile.first_name == "Anna"  # the row's context is now kept on the instance

    profile.patient_id = ben.user.pk
    with pytest.raises(DecryptionError, match=r"PatientProfile\.last_name"):
        profile.last_name  # noqa: B018

    profile.patient_id = int(str(anna.user.pk))  # equal, though not the same object
    assert profile.last_name == "Mustermann"


@pytest.mark.parametrize(
    "source, target",
    [
        ("first_name", "last_name"),
        ("last_name", "first_name"),
        ("first_name", "date_of_birth"),
        ("date_of_birth", "first_name"),
    ],
)
def test_value_copied_to_another_column_of_the_same_row_is_refused(make_patient, source, target):
    patient = make_patient()
    profile_column_set(patient.user.pk, target, profile_column(patient.user.pk, source))
    profile = _profile(patient)
    with pytest.raises(DecryptionError, match=rf"PatientProfile\.{target} .*authentication"):
        getattr(profile, target)
    assert getattr(profile, source) is not None  # the source column still opens


def _flip_payload_bit(envelope: str, bit: int) -> str:
    version, key_id, payload = envelope.split("$")
    sealed = bytearray(base64.b64decode(payload))
    sealed[bit // 8] ^= 1 << (bit % 8)
    return f"{version}${key_id}${base64.b64encode(bytes(sealed)).decode()}"


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda envelope: "Erika", id="plaintext"),
        pytest.param(lambda envelope: "", id="empty"),
        pytest.param(lambda envelope: "pt1$", id="truncated-header"),
        pytest.param(lambda envelope: envelope.replace("pt1$", "pt9$", 1), id="unknown-version"),
        pytest.param(lambda envelope: "pt1$abc$" + envelope.split("$")[2], id="key-id-not-int"),
        pytest.param(lambda envelope: envelope + "!", id="payload-not-base64"),
        pytest.param(lambda envelope: envelope[:-1], id="payload-bad-padding"),
        pytest.param(lambda envelope: envelope[:-4], id="payload-truncated"),
        pytest.param(lambda envelope: envelope.rsplit("$", 1)[0] + "$QUJD", id="payload-too-short"),
        pytest.param(
            lambda envelope: "pt1$99999999999999999999999$" + envelope.split("$")[2],
            id="key-id-out-of-range",
        ),
        pytest.param(lambda envelope: "pt1$0$" + envelope.split("$")[2], id="key-id-unknown"),
        pytest.param(lambda envelope: _flip_payload_bit(envelope, 3), id="nonce-bit"),
        pytest.param(lambda envelope: _flip_payload_bit(envelope, 100), id="ciphertext-bit"),
        pytest.param(lambda envelope: _flip_payload_bit(envelope, 8 * 20), id="tag-bit"),
    ],
)
def test_corrupted_envelope_gives_a_decryption_error(make_patient, corrupt):
    patient = make_patient(first_name="Erika")  # 5 bytes: the tag starts at byte 17
    envelope = profile_column(patient.user.pk, "first_name")
    profile_column_set(patient.user.pk, "first_name", corrupt(envelope))
    profile = _profile(patient)
    with pytest.raises(DecryptionError, match=r"^PatientProfile\.first_name"):
        profile.first_name  # noqa: B018
    assert profile.last_name == "Mustermann"


# --- The stored format does not move, and one AES-GCM object serves a key per request ---------


def test_values_stay_bound_to_the_documented_associated_data(make_patient):
    """The fields build their associated data from parts made once; the bytes must stay those
    of `associated_data()`, or every value stored before would stop opening."""
    from vault import keys
    from vault.fields import associated_data

    patient = make_patient(first_name="Hildegard")
    patient_id = patient.user.pk
    key_id, _ = keys.current_data_key(patient_id)
    data_key = keys.data_key(key_id, patient_id)
    context = associated_data(
        table="vault_patientprofile", column="first_name", patient_id=patient_id, row_id=patient_id
    )
    # A value sealed today opens under the documented context, with the plain AEAD layer.
    _, _, payload = profile_column(patient_id, "first_name").split("$")
    sealed = base64.b64decode(payload, validate=True)
    assert crypto.open_sealed(data_key, sealed, context) == b"Hildegard"
    # A value sealed the way the first release sealed it still opens through the field.
    old_style = crypto.seal(data_key, b"Hedwig", context)
    profile_column_set(
        patient_id, "first_name", f"pt1${key_id}${base64.b64encode(old_style).decode()}"
    )
    assert _profile(patient).first_name == "Hedwig"


def test_one_aes_gcm_object_per_data_key_per_request(make_patient, monkeypatch):
    from vault import keys

    patients = [make_patient(first_name=f"Name{n}") for n in range(3)]
    made = []
    real_cipher = crypto.cipher
    monkeypatch.setattr(crypto, "cipher", lambda key: made.append(key) or real_cipher(key))
    keys._master_cipher.cache_clear()

    with keys.request_key_cache():
        profiles = [_profile(p) for p in patients]
        names = [profile.first_name for profile in profiles]
        for profile in profiles:  # read and write every value of the three profiles
            profile.last_name = profile.last_name + " Neu"
            profile.save()
            assert (profile.last_name, profile.date_of_birth.year) == ("Mustermann Neu", 1984)
    assert names == ["Name0", "Name1", "Name2"]
    # Nine values read, three written, each key expanded once: 3 data keys and the master key.
    assert len(made) == len(set(made)) == 4


def test_a_value_saved_after_the_instance_moved_to_another_patient_is_bound_to_that_patient(
    make_patient,
):
    """`pre_save` reuses the row's part of the associated data the instance keeps; after the
    instance is pointed at another patient it must seal under that patient's key and row, not
    the one kept from before."""
    from vault import keys
    from vault.models import RecordEntry

    anna, ben = make_patient(first_name="Anna"), make_patient(first_name="Ben")
    title = RecordEntry._meta.get_field("title")
    entry = RecordEntry(patient_id=anna.user.pk, title="Erstbefund")
    with keys.request_key_cache():
        first = title.pre_save(entry, True)  # the row's context is now kept on the instance
        assert title.unseal_for(anna.user.pk, title.row_context(anna.user.pk, entry.pk), first) == (
            "Erstbefund"
        )
        entry.patient_id, entry.title = int(str(ben.user.pk)), "Zweitbefund"
        second = title.pre_save(entry, True)
        ben_context = title.row_context(ben.user.pk, entry.pk)
        assert title.unseal_for(ben.user.pk, ben_context, second) == "Zweitbefund"
        with pytest.raises(DecryptionError):
            title.unseal_for(anna.user.pk, title.row_context(anna.user.pk, entry.pk), second)


# --- Inside a request, with the key's cipher cached (the read path written out) -----------


def test_inside_a_request_a_moved_value_is_refused_as_outside_it(make_patient, monkeypatch):
    """Decision 0019, fourth round: inside a request whose cache holds the patient's cipher, a
    value is opened without `unseal` (its common case written out). It must bind the value to
    its table, column, patient and row exactly as `unseal` does: every move is refused, with
    the same error naming the field, and the reads that succeed took the written-out path."""
    from accounts.tests.factories import ClinicFactory, StaffFactory
    from vault import keys
    from vault.fields import EncryptedTextField
    from vault.models import RecordEntry
    from vault.tests.factories import record_entry_write, stored_value, stored_value_set

    anna, ben = make_patient(first_name="Anna"), make_patient(first_name="Ben")
    clinic = ClinicFactory()
    author = StaffFactory(clinic=clinic)
    first, second = (
        record_entry_write(author=author, patient=ben.user, clinic=clinic, title=title)
        for title in ("Erstbefund", "Zweitbefund")
    )
    ben_key_id = PatientKey.objects.get(patient=ben.user).pk
    _, _, anna_payload = profile_column(anna.user.pk, "first_name").split("$")
    moves = {
        # Anna's value relabelled with Ben's key id: Ben's cipher is cached, the tag fails.
        "another patient": (
            PatientProfile,
            ben.user.pk,
            "first_name",
            f"pt1${ben_key_id}${anna_payload}",
        ),
        "another column": (
            PatientProfile,
            ben.user.pk,
            "first_name",
            profile_column(ben.user.pk, "last_name"),
        ),
        "another row": (
            RecordEntry,
            second.pk,
            "title",
            stored_value(RecordEntry, first.pk, "title"),
        ),
        "altered": (
            PatientProfile,
            ben.user.pk,
            "last_name",
            _flip_payload_bit(profile_column(ben.user.pk, "last_name"), 100),
        ),
    }
    unseals = []
    real_unseal = EncryptedTextField.unseal
    monkeypatch.setattr(
        EncryptedTextField, "unseal", lambda *a: unseals.append(a[0].name) or real_unseal(*a)
    )
    for move, (model, pk, column, envelope) in moves.items():
        original = stored_value(model, pk, column)
        stored_value_set(model, pk, column, envelope)
        with keys.request_key_cache():
            # Ben's cipher into the request cache, through a value that stays where it was.
            assert RecordEntry.objects.get(pk=first.pk).body.startswith("Blutdruck"), move
            unseals.clear()
            instance = model.objects.get(pk=pk)
            with pytest.raises(
                DecryptionError, match=rf"^{model.__name__}\.{column} .*authentication"
            ):
                getattr(instance, column)
            assert unseals == [column], move  # the written-out path, then `unseal` to raise
            unseals.clear()
            other = (
                "body"
                if model is RecordEntry
                else ("date_of_birth" if column == "last_name" else "last_name")
            )
            assert getattr(instance, other) is not None
            assert unseals == [], move  # a value in its place opens without `unseal`
        stored_value_set(model, pk, column, original)

    # An instance pointed at another patient after a first read: Anna's values, kept on it,
    # do not open as Ben's (Ben's key is not the one they name).
    with keys.request_key_cache():
        assert _profile(ben).first_name == "Ben"
        profile = _profile(anna)
        assert profile.first_name == "Anna"
        profile.patient_id = ben.user.pk
        with pytest.raises(DecryptionError, match=r"PatientProfile\.last_name"):
            profile.last_name  # noqa: B018
