"""Booking pages. For now one: the waitlist offer the e-mail links to, which shows the freed
slot held for the patient and confirms or declines it with a POST form (CSRF-protected)."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from accounts.models import Role
from booking import waitlist
from booking.models import OfferStatus
from patterm.errors import DomainError
from patterm.web import role_required

MESSAGE_CONFIRMED = _("Your appointment is booked. A confirmation is on its way by e-mail.")
MESSAGE_DECLINED = _("The slot goes to the next patient waiting. You stay on the waitlist.")


@role_required(Role.PATIENT)
@require_http_methods(["GET", "POST"])
def waitlist_offer(request, offer_id):
    """The offer (someone else's: 404). POST `action=confirm` books it, `action=decline`
    passes it on; a closed or expired offer shows why."""
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "confirm":
                waitlist.offer_confirm(patient=request.user, offer_id=offer_id)
                messages.success(request, MESSAGE_CONFIRMED)
            elif action == "decline":
                waitlist.offer_decline(patient=request.user, offer_id=offer_id)
                messages.info(request, MESSAGE_DECLINED)
        except DomainError as error:
            if error.status == 404:
                raise
            messages.error(request, error.message)
        return redirect("booking:waitlist_offer", offer_id=offer_id)
    offer = waitlist.offer_get(patient=request.user, offer_id=offer_id)
    return render(
        request,
        "booking/waitlist_offer.html",
        {"offer": offer, "slot": offer.slot, "is_open": offer.status == OfferStatus.OPEN},
    )
