"""Relatives (Angehörige): which patient account acts for which other patient.

The link lives here, beside the other answers to "who may act on this patient's data" (care
relationships, consents, emergency access), so that `consent.policy` decides on it and every
layer above (vault, booking) asks the same question. Creating a relative needs a data key and an
encrypted profile: that is `vault.relatives`.
"""

from django.db.models import QuerySet

from accounts.models import Role, User
from consent import policy
from consent.models import RelativeLink
from patterm.errors import NotFound


def active_links(*, holder: User) -> QuerySet[RelativeLink]:
    """The relatives `holder` manages now, in the order they were added."""
    return RelativeLink.objects.filter(
        holder=holder, ended_at__isnull=True, relative__is_active=True
    ).select_related("relative")


def relative_link_get(*, holder: User, relative_id) -> RelativeLink:
    """The active link of `holder` to the relative `relative_id`.

    Someone else's relative, a former relative (taken over), an id that does not exist or is
    not a number: NotFound, the same answer for each, so nobody learns who exists.
    """
    try:
        relative_pk = int(relative_id)
    except (TypeError, ValueError):
        raise NotFound() from None
    if not 0 < relative_pk < 2**63 or holder.role != Role.PATIENT or not holder.is_active:
        raise NotFound()
    link = active_links(holder=holder).filter(relative_id=relative_pk).first()
    if link is None:
        raise NotFound()
    return link


def relative_get(*, holder: User, relative_id) -> User:
    """The relative's account (a patient without login) that `holder` manages; NotFound else."""
    return relative_link_get(holder=holder, relative_id=relative_id).relative


def holder_of(patient_id: int) -> User | None:
    """The account holder managing this patient now, or None."""
    link = (
        RelativeLink.objects.filter(relative_id=patient_id, ended_at__isnull=True)
        .select_related("holder")
        .first()
    )
    return link.holder if link else None


def contact_for(patient: User) -> User:
    """Whom Patterm writes to about `patient`: the holder of a relative (who has no address of
    their own), else the patient."""
    return holder_of(patient.pk) or patient


def acting_for(*, actor: User | None, patient: User) -> tuple[User, dict]:
    """Who acts for `patient`, and what their audit row adds: nothing when the patient acts
    themself (`actor` None or the patient), `{"bases": ["holder"]}` for their account holder,
    so the relative's access log shows on which basis. Anyone else: NotFound, the same answer
    as for a relative that does not exist."""
    if actor is None or actor.pk == patient.pk:
        return patient, {}
    if policy.acting_basis(actor=actor, patient=patient) != policy.Basis.HOLDER:
        raise NotFound()
    return actor, {"bases": [policy.Basis.HOLDER]}
