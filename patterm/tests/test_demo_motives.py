"""The demo data's visit motives (issue 16): every practitioner has some, with different
durations and rules; the paediatrician's can be found and booked after `make run`."""

import pytest
from django.core.management import call_command

from accounts.models import Membership, Role, User
from booking.models import Slot, VisitMotive
from booking.search import slots_where_motive_fits
from booking.services import appointment_book

pytestmark = pytest.mark.django_db


def test_every_demo_practitioner_has_motives_with_different_durations_and_rules():
    call_command("seed_demo", verbosity=0)
    count = VisitMotive.objects.count()
    call_command("seed_demo", verbosity=0)

    assert VisitMotive.objects.count() == count  # idempotent
    for membership in Membership.objects.filter(role=Role.PRACTITIONER):
        motives = list(VisitMotive.objects.filter(membership=membership))
        assert len({m.duration_minutes for m in motives}) >= 2, membership
    names = set(
        VisitMotive.objects.filter(
            membership__user__email="kinderaerztin@demo.patterm.de"
        ).values_list("name_de", flat=True)
    )
    assert names == {"U-Untersuchung", "Impfung", "Akutsprechstunde"}
    rules = VisitMotive.objects.values_list(
        "patients", "bookable_online", "accepts_private", "accepts_self_pay"
    )
    assert {r[0] for r in rules} == {"both", "new", "known"}
    assert {r[1] for r in rules} == {True, False}


def test_the_demo_u_untersuchung_takes_two_slots():
    call_command("seed_demo", verbosity=0)
    motive = VisitMotive.objects.select_related("membership").get(name_de="U-Untersuchung")
    free = Slot.objects.filter(is_booked=False, held_for=None)
    start = slots_where_motive_fits(free, motive).order_by("starts_at").first()
    patient = User.objects.get(email="patient@demo.patterm.de")

    appointment = appointment_book(
        patient=patient, slot_id=start.public_id, motive_id=motive.pk, insurance_type="gesetzlich"
    )

    assert appointment.occupied_slots.count() == 2
