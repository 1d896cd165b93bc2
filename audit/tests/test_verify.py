"""A1 for the chain core: every edit, deletion, reordering or insertion in a copy of the log (the
append-only triggers dropped) is found, and the first broken sequence number is named, by
`chain_verify` and by `manage.py verify_audit`; an intact chain raises no alarm.

Not covered here, because a plain chain cannot see them: a cut tail and a rewrite that
recomputes every later hash (A2, A3: signed checkpoints).
"""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import F

from audit.chain import GENESIS_HASH, HASHED_FIELDS, chain_hash
from audit.models import AuditEvent
from audit.services import chain_verify, subject_pseudonym

pytestmark = pytest.mark.django_db

N = 200
MISSING = "is missing"
UNCHAINED = "does not chain from the row before it"
CHANGED = "does not match its hash"


def row(seq: int) -> dict:
    return AuditEvent.objects.values().get(seq=seq)


def recreate(fields: dict, **changes) -> None:
    AuditEvent.objects.create(**{**fields, **changes})


def forged(template: dict, seq: int, prev_hash: str, **content) -> dict:
    """A row like `template` with made-up content and a correct hash of its own, chained from
    `prev_hash`."""
    fields = {**template, **content, "seq": seq, "prev_hash": prev_hash}
    fields["hash"] = chain_hash(prev_hash, fields)
    return fields


# --- Ways to tamper; each returns the sequence number that must be named and the problem --------


def edit_details(seq):
    AuditEvent.objects.filter(seq=seq).update(details={"index": -1, "method": "password"})
    return seq, CHANGED


def edit_action(seq):
    new = "auth.token_revoke" if row(seq)["action"] != "auth.token_revoke" else "auth.login"
    AuditEvent.objects.filter(seq=seq).update(action=new)
    return seq, CHANGED


def edit_actor(seq):
    AuditEvent.objects.filter(seq=seq).update(actor_id=(row(seq)["actor_id"] or 0) + 1)
    return seq, CHANGED


def remove_actor(seq):
    assert row(seq)["actor_id"] is not None
    AuditEvent.objects.filter(seq=seq).update(actor_id=None)
    return seq, CHANGED


def edit_outcome(seq):
    new = "success" if row(seq)["outcome"] != "success" else "failure"
    AuditEvent.objects.filter(seq=seq).update(outcome=new)
    return seq, CHANGED


def edit_time_by_one_microsecond(seq):
    AuditEvent.objects.filter(seq=seq).update(
        occurred_at=F("occurred_at") + timedelta(microseconds=1)
    )
    return seq, CHANGED


def edit_client_address(seq):
    AuditEvent.objects.filter(seq=seq).update(client_address="192.0.2.250")
    return seq, CHANGED


def edit_subject(seq):
    AuditEvent.objects.filter(seq=seq).update(subject_ref=subject_pseudonym(999_999))
    return seq, CHANGED


def edit_request_id(seq):
    AuditEvent.objects.filter(seq=seq).update(request_id="request-forged00")
    return seq, CHANGED


def edit_stored_hash(seq):
    AuditEvent.objects.filter(seq=seq).update(hash="a" * 64)
    return seq, CHANGED


def edit_prev_hash(seq):
    AuditEvent.objects.filter(seq=seq).update(prev_hash="b" * 64)
    return seq, UNCHAINED


def edit_and_recompute_own_hash(seq):
    """The row itself is consistent again; the next row no longer chains from it."""
    fields = {**row(seq), "details": {"index": -1}}
    AuditEvent.objects.filter(seq=seq).update(
        details=fields["details"], hash=chain_hash(fields["prev_hash"], fields)
    )
    return seq + 1, UNCHAINED


def delete_row(seq):
    AuditEvent.objects.filter(seq=seq).delete()
    return seq, MISSING


def delete_run_of_rows(seq):
    AuditEvent.objects.filter(seq__gte=seq, seq__lt=seq + 10).delete()
    return seq, MISSING


def move_row_to_later_number(seq):
    """A gap: the row is renumbered past where it was (here, the last row)."""
    fields = row(seq)
    AuditEvent.objects.filter(seq=seq).delete()
    recreate(fields, seq=seq + 5)
    return seq, MISSING


def swap_adjacent_rows(seq):
    """Reorder: rows seq and seq+1 trade places, each with its own hashes."""
    first, second = row(seq), row(seq + 1)
    AuditEvent.objects.filter(seq__in=[seq, seq + 1]).delete()
    recreate(first, seq=seq + 1)
    recreate(second, seq=seq)
    return seq, UNCHAINED


def swap_distant_rows(seq):
    """Reorder: row seq trades places with row seq + 100."""
    other = seq + 100
    first, second = row(seq), row(other)
    AuditEvent.objects.filter(seq__in=[seq, other]).delete()
    recreate(first, seq=other)
    recreate(second, seq=seq)
    return seq, UNCHAINED


def swap_content_keep_chain_fields(seq):
    """Two rows trade what they say but keep their places and hashes."""
    other = seq + 100
    first, second = row(seq), row(other)
    content = [name for name in HASHED_FIELDS if name != "seq"]
    AuditEvent.objects.filter(seq=seq).update(**{name: second[name] for name in content})
    AuditEvent.objects.filter(seq=other).update(**{name: first[name] for name in content})
    return seq, CHANGED


def replace_with_forged_row(seq):
    """Delete a row and put a forged one, correctly hashed from its predecessor, in its place."""
    previous_hash = row(seq - 1)["hash"] if seq > 1 else GENESIS_HASH
    replacement = forged(row(seq), seq, previous_hash, details={"forged": True})
    AuditEvent.objects.filter(seq=seq).delete()
    recreate(replacement)
    return seq + 1, UNCHAINED


def insert_forged_row(seq):
    """Shift rows seq..N up by one and slip a forged row in at seq. The unique prev_hash forces
    the forger to repoint the shifted row at the forged one, whose hash then no longer matches."""
    previous_hash = row(seq - 1)["hash"] if seq > 1 else GENESIS_HASH
    later = list(AuditEvent.objects.filter(seq__gte=seq).order_by("seq").values())
    inserted = forged(later[0], seq, previous_hash, details={"forged": True})
    AuditEvent.objects.filter(seq__gte=seq).delete()
    recreate(inserted)
    for position, fields in enumerate(later):
        changes = {"seq": fields["seq"] + 1}
        if position == 0:
            changes["prev_hash"] = inserted["hash"]
        recreate(fields, **changes)
    return seq + 1, CHANGED


def append_row_with_wrong_prev_hash(seq):
    recreate(forged(row(seq - 1), seq, "c" * 64, details={"appended": True}))
    return seq, UNCHAINED


def append_row_with_wrong_hash(seq):
    fields = forged(row(seq - 1), seq, row(seq - 1)["hash"], details={"appended": True})
    recreate(fields, hash="d" * 64)
    return seq, CHANGED


TAMPERING = [
    (edit_details, 1),
    (edit_details, 57),
    (edit_details, N),
    (edit_action, 1),
    (edit_action, 120),
    (edit_actor, 33),
    (remove_actor, 34),
    (edit_outcome, 99),
    (edit_time_by_one_microsecond, 150),
    (edit_client_address, 61),
    (edit_subject, 77),
    (edit_request_id, 12),
    (edit_stored_hash, 88),
    (edit_prev_hash, 2),
    (edit_and_recompute_own_hash, 1),
    (edit_and_recompute_own_hash, 140),
    (delete_row, 1),
    (delete_row, 100),
    (delete_run_of_rows, 180),
    (move_row_to_later_number, N),
    (swap_adjacent_rows, 40),
    (swap_distant_rows, 10),
    (swap_content_keep_chain_fields, 25),
    (replace_with_forged_row, 1),
    (replace_with_forged_row, 80),
    (insert_forged_row, 1),
    (insert_forged_row, 160),
    (append_row_with_wrong_prev_hash, N + 1),
    (append_row_with_wrong_hash, N + 1),
]


@pytest.mark.parametrize(
    ("tamper", "position"),
    TAMPERING,
    ids=[f"{tamper.__name__}-{position}" for tamper, position in TAMPERING],
)
def test_tampering_is_detected_and_the_first_broken_row_named(
    build_chain, triggers_dropped, tamper, position
):
    build_chain(N)
    assert chain_verify().ok

    with transaction.atomic():
        expected_seq, expected_problem = tamper(position)

    for chunk_size in (2000, 7):
        result = chain_verify(chunk_size=chunk_size)
        assert not result.ok
        assert result.first_broken_seq == expected_seq
        assert expected_problem in result.problem
        assert result.events_checked == expected_seq - 1
        assert result.head_seq == (expected_seq - 1 or None)
    with pytest.raises(CommandError, match=rf"sequence number {expected_seq}\b"):
        call_command("verify_audit", stdout=StringIO(), stderr=StringIO())


def test_no_false_alarm_on_an_intact_chain(build_chain):
    build_chain(N)
    head = AuditEvent.objects.order_by("-seq").first()
    progress = []

    result = chain_verify(chunk_size=7, on_progress=progress.append)

    assert result.ok
    assert result.first_broken_seq is None
    assert result.problem == ""
    assert (result.events_checked, result.head_seq, result.head_hash) == (N, N, head.hash)
    assert sum(progress) == N
    out = StringIO()
    call_command("verify_audit", "--chunk-size", "13", stdout=out, stderr=StringIO())
    assert re.search(
        rf"intact: {N} events, 0 signed checkpoints, head #{N} {head.hash}", out.getvalue()
    )


def test_an_empty_chain_verifies():
    result = chain_verify()

    assert (result.ok, result.events_checked, result.head_seq, result.head_hash) == (
        True,
        0,
        None,
        None,
    )
    out = StringIO()
    call_command("verify_audit", stdout=out, stderr=StringIO())
    assert "empty" in out.getvalue()
