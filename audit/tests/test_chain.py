"""Staging and leaves: what an event records, how staged events become consecutive leaves, what
the leaf covers, and that it survives the database (the old chain's hash function too)."""

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from audit import context, tlog
from audit.chain import GENESIS_HASH, HASHED_FIELDS, canonical_json, canonical_leaf, chain_hash
from audit.integrator import integrate_pending
from audit.models import AuditAction, AuditEvent, AuditTreeHash, Outcome
from audit.services import chain_verify, event_append, event_leaf, subject_pseudonym
from audit.signals import send_event
from audit.tests.helpers import append_varied, stored_rows
from audit.verify_export import leaf_hash

pytestmark = pytest.mark.django_db


def a_row(**overrides) -> dict:
    row = {
        "seq": 7,
        "occurred_at": datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC),
        "actor_id": 12,
        "actor_role": "patient",
        "action": "auth.login",
        "object_type": "token",
        "object_id": "41",
        "subject_ref": "",
        "clinic_id": None,
        "purpose": "",
        "outcome": "success",
        "request_id": "abcdef0123456789",
        "client_address": "192.0.2.1",
        "details": {"method": "password"},
    }
    row.update(overrides)
    return row


# --- Linking ------------------------------------------------------------------------------------


def test_genesis_hash_is_64_zeros():
    assert GENESIS_HASH == "0" * 64


def test_a_staged_event_is_a_row_without_leaf_until_integrated(build_chain):
    build_chain(1, integrate=False)

    (row,) = AuditEvent.objects.values("leaf_index", "prev_hash", "hash")
    assert row == {"leaf_index": None, "prev_hash": None, "hash": None}
    assert integrate_pending() == 1
    assert AuditEvent.objects.get().leaf_index == 0


def test_integration_gives_consecutive_leaves_in_seq_order_whose_hashes_the_tree_stores(
    build_chain,
):
    build_chain(30)

    rows = stored_rows()
    assert [row["leaf_index"] for row in rows] == list(range(30))
    stored = dict(AuditTreeHash.objects.values_list("id", "hash"))
    for row in rows:
        leaf = canonical_json(row).encode()
        assert bytes(stored[tlog.stored_hash_index(0, row["leaf_index"])]) == leaf_hash(leaf)
    assert len(stored) == tlog.stored_hash_count(30)


def test_event_append_records_the_given_fields():
    actor = SimpleNamespace(pk=314, role="practitioner")

    event = event_append(
        action=AuditAction.AUTH_TOKEN_REVOKE,
        actor=actor,
        outcome=Outcome.DENIED,
        object_type="token",
        object_id="9",
        subject_id=5,
        clinic_id=3,
        purpose="treatment",
        details={"reason": "logout_all"},
    )

    stored = AuditEvent.objects.get(seq=event.seq)
    assert (stored.actor_id, stored.actor_role) == (314, "practitioner")
    assert (stored.action, stored.outcome) == ("auth.token_revoke", "denied")
    assert (stored.object_type, stored.object_id) == ("token", "9")
    assert stored.subject_ref == subject_pseudonym(5)
    assert (stored.clinic_id, stored.purpose) == (3, "treatment")
    assert stored.details == {"reason": "logout_all"}
    assert (stored.request_id, stored.client_address) == ("", None)


def test_send_event_appends_in_the_callers_transaction():
    with transaction.atomic():
        send_event(action=AuditAction.AUTH_LOGIN, object_type="token", object_id=17)
        # Visible before the outer block ends: the receiver wrote inside this transaction.
        event = AuditEvent.objects.get()
    assert event.object_id == "17"
    assert event.outcome == Outcome.SUCCESS
    assert event.leaf_index is None  # staged: the integrator takes it once this commits


def test_send_event_inside_a_failed_transaction_leaves_no_row():
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        send_event(action=AuditAction.AUTH_LOGIN)
        assert AuditEvent.objects.count() == 1
        raise Boom

    assert AuditEvent.objects.count() == 0
    # The next event is the tree's first leaf: nothing of the rolled-back row is left behind.
    event = event_append(action=AuditAction.AUTH_LOGOUT, outcome=Outcome.SUCCESS)
    integrate_pending()
    event.refresh_from_db()
    assert event.leaf_index == 0
    assert chain_verify().ok


def test_a_failing_audit_write_propagates_to_the_sender():
    """signal.send (not send_robust): a change whose audit row cannot be written fails too."""
    with pytest.raises(TypeError), transaction.atomic():
        send_event(action=AuditAction.AUTH_LOGIN, details={"not json": {1, 2}})
    assert AuditEvent.objects.count() == 0


def test_a_staging_insert_the_database_refuses_rolls_the_callers_change_back_even_if_caught():
    """No savepoint around the staging INSERT: a caller that catches the error cannot commit its
    change without the event that records it."""
    from django.contrib.auth.models import Group
    from django.db import DatabaseError, connection

    with connection.cursor() as cursor:  # a database that refuses one action (rolled back)
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'refused'; END; $$"
            )
            cursor.execute(
                "CREATE TRIGGER test_refuse BEFORE INSERT ON audit_auditevent FOR EACH ROW "
                "WHEN (NEW.action = 'test.refused') EXECUTE FUNCTION test_refuse()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER test_refuse BEFORE INSERT ON audit_auditevent "
                "WHEN NEW.action = 'test.refused' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    with transaction.atomic():
        Group.objects.create(name="changed without its event")
        with contextlib.suppress(DatabaseError):  # the caller carries on as if nothing happened
            event_append(action="test.refused", outcome=Outcome.SUCCESS)
    assert not Group.objects.filter(name="changed without its event").exists()
    assert not AuditEvent.objects.filter(action="test.refused").exists()


# --- What the hash covers (no database) ---------------------------------------------------------


@pytest.mark.parametrize("field", HASHED_FIELDS)
def test_changing_any_hashed_field_changes_the_hash(field):
    row = a_row()
    changed = {
        "seq": 8,
        "occurred_at": row["occurred_at"] + timedelta(microseconds=1),
        "actor_id": 13,
        "actor_role": "practitioner",
        "action": "auth.logout",
        "object_type": "session",
        "object_id": "42",
        "subject_ref": "0" * 32,
        "clinic_id": 1,
        "purpose": "treatment",
        "outcome": "failure",
        "request_id": "abcdef0123456780",
        "client_address": "192.0.2.2",
        "details": {"method": "totp"},
    }[field]

    assert chain_hash(GENESIS_HASH, a_row(**{field: changed})) != chain_hash(GENESIS_HASH, row)


def test_the_hash_depends_on_the_previous_hash():
    assert chain_hash(GENESIS_HASH, a_row()) != chain_hash("1" * 64, a_row())


def test_canonical_json_has_sorted_keys_no_spaces_utc_microseconds_and_raw_unicode():
    berlin = timezone(timedelta(hours=1))
    row = a_row(
        occurred_at=datetime(2026, 3, 1, 10, 30, 15, tzinfo=berlin),
        details={"b": 1, "a": "Größe"},
    )

    text = canonical_json(row)

    assert ": " not in text and ", " not in text
    assert '"occurred_at":"2026-03-01T09:30:15.000000+00:00"' in text
    assert '"details":{"a":"Größe","b":1}' in text
    assert list(json.loads(text)) == sorted(HASHED_FIELDS)


def test_canonical_json_ignores_fields_outside_the_hash():
    assert canonical_json(a_row()) == canonical_json({**a_row(), "hash": "x", "prev_hash": "y"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    details=st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
)
def test_canonical_json_is_independent_of_key_order_time_zone_and_a_json_round_trip(
    details, offset_minutes
):
    """What the database may do to a row (JSONB reorders keys, times come back in another zone)
    does not change its canonical form."""
    instant = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    row = a_row(occurred_at=instant, details=details)
    reordered = dict(reversed(list(row.items())))
    reordered["details"] = json.loads(json.dumps(dict(reversed(list(details.items())))))
    reordered["occurred_at"] = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))

    assert canonical_json(reordered) == canonical_json(row)


texts = st.text(max_size=12)
optional_ids = st.none() | st.integers(0, 2**62)


@given(
    seq=st.integers(1, 2**62),
    actor_id=optional_ids,
    clinic_id=optional_ids,
    strings=st.lists(texts, min_size=8, max_size=8),
    address=st.none() | st.sampled_from(["192.0.2.1", "2001:DB8::1", "::ffff:192.0.2.9", "x y"]),
    details=st.dictionaries(
        st.text(max_size=8),
        json_values | st.floats(allow_nan=False, allow_infinity=False),
        max_size=6,
    ),
    microsecond=st.integers(0, 999_999),
)
def test_the_streamed_leaf_is_byte_for_byte_the_canonical_json(
    seq, actor_id, clinic_id, strings, address, details, microsecond
):
    """Verification writes leaves directly (canonical_leaf); the integrator and the export use
    canonical_json: they must never differ, or an intact log would verify as broken."""
    role, action, object_type, object_id, subject_ref, purpose, outcome, request_id = strings
    instant = datetime(2026, 3, 1, 9, 30, 15, microsecond, tzinfo=UTC)
    row = {
        "seq": seq,
        "occurred_at": instant,
        "actor_id": actor_id,
        "actor_role": role,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "subject_ref": subject_ref,
        "clinic_id": clinic_id,
        "purpose": purpose,
        "outcome": outcome,
        "request_id": request_id,
        "client_address": address,
        "details": details,
    }
    streamed = [row[name] for name in HASHED_FIELDS]
    streamed[1] = instant.isoformat(timespec="microseconds")

    assert canonical_leaf(*streamed) == canonical_json(row).encode()


# What JSON escapes (quote, backslash, control characters) and what a database's text formats
# escape (backslash, tab, line breaks), in a string column and in details.
AWKWARD = 'a\\b\tc\nd"e\rf\x0bg\x0ch\x08i\x01j\x7fk\u2028l\\N\\\\'


def test_the_leaves_streamed_from_the_database_are_the_events_leaves():
    from audit.services import _leaves

    for index in range(40):
        append_varied(index)
    event_append(
        action="test.unicode",
        outcome=Outcome.SUCCESS,
        details={"ß": "Größe \u2014 \u0001", "z": [1.5, -0.0, 1e20, None, True], "a": {"b": {}}},
    )
    event_append(
        action="test.escapes",
        outcome=Outcome.SUCCESS,
        object_id=AWKWARD,
        purpose="\\",
        details={AWKWARD: [AWKWARD, "\\", "\t"], "\n": "\\n"},
    )
    integrate_pending()
    events = list(AuditEvent.objects.order_by("leaf_index"))

    with transaction.atomic():
        streamed = list(_leaves(0, len(events), chunk_size=7))

    assert [(index, seq) for index, seq, _ in streamed] == [(e.leaf_index, e.seq) for e in events]
    assert [leaf for _, _, leaf in streamed] == [event_leaf(event) for event in events]


# --- The pseudonym of a patient -----------------------------------------------------------------


@override_settings(PATTERM_AUDIT_PSEUDONYM_KEY="key-one")
def test_subject_pseudonym_is_stable_and_differs_per_patient():
    first = subject_pseudonym(123456)

    assert subject_pseudonym(123456) == first
    assert len(first) == 32 and all(char in "0123456789abcdef" for char in first)
    assert len({subject_pseudonym(patient_id) for patient_id in range(1, 501)}) == 500
    assert "123456" not in first


def test_subject_pseudonym_depends_on_the_key():
    with override_settings(PATTERM_AUDIT_PSEUDONYM_KEY="key-one"):
        under_one = subject_pseudonym(42)
    with override_settings(PATTERM_AUDIT_PSEUDONYM_KEY="key-two"):
        under_two = subject_pseudonym(42)

    assert under_one != under_two


@override_settings(PATTERM_AUDIT_PSEUDONYM_KEY="key-one")
def test_a_row_names_the_subject_only_by_pseudonym():
    event = event_append(action=AuditAction.AUTH_REGISTER, outcome=Outcome.SUCCESS, subject_id=987)

    stored = AuditEvent.objects.values(*HASHED_FIELDS).get(seq=event.seq)
    assert stored["subject_ref"] == subject_pseudonym(987)
    assert 987 not in stored.values()
    assert "987" not in stored.values()


# --- The same hash after a round trip through the database --------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "192.0.2.10",
        "2001:db8::1",
        "::ffff:192.0.2.10",
        "::1",
        # Spellings the database stores in another form: the hash must not depend on it.
        "2001:DB8:0:0:0:0:0:1",
        "2001:db8:0000::0001",
        "::1.2.3.4",
        "::102:304",
        "::ffff:102:304",
        "fe80::1%eth0",
    ],
)
def test_a_row_verifies_after_the_database_round_trip(address):
    details = {
        "b": 1,
        "a": "x",
        "nested": {"z": [3, 1, {"d": None, "c": True}], "äöü": "Größe ✓"},
        "long_key_first": 1.5,
    }
    id_token = context.request_id.set("roundtrip-0001")
    address_token = context.client_address.set(address)
    try:
        event = event_append(
            action=AuditAction.AUTH_LOGIN, outcome=Outcome.SUCCESS, details=details
        )
    finally:
        context.request_id.reset(id_token)
        context.client_address.reset(address_token)

    (row,) = stored_rows()
    assert row["details"] == details
    assert isinstance(row["client_address"], str)
    # The leaf of the event as appended is the leaf of the row as the database returns it.
    assert event_leaf(event) == canonical_json(row).encode()
    integrate_pending()
    assert chain_verify().ok


@pytest.mark.parametrize(
    "details",
    [
        {"whole_float": 1e20},
        {"huge_float": 1.5e300},
        {"negative_zero": -0.0},
        {"one_point_zero": 1.0},
        {"fractions": [0.1, 1e-7, -2.5]},
        {"big_integer": 2**64},
        {"tuple": (1, "a")},
        {7: "integer key"},
        {"line_separator": "a\u2028b", "emoji": "\N{CHECK MARK}"},
    ],
    ids=repr,
)
def test_details_verify_whatever_the_database_does_to_numbers_and_keys(details):
    """jsonb prints numbers its own way (1e20 as 100000000000000000000, -0.0 as 0)."""
    event_append(action=AuditAction.AUTH_LOGIN, outcome=Outcome.SUCCESS, details=details)

    (row,) = stored_rows()
    assert row["details"] == json.loads(json.dumps(details))
    integrate_pending()
    result = chain_verify()
    assert result.ok, result.problem
