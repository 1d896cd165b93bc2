from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render

from patterm.middleware import API_PREFIX


def home(request):
    return render(request, "home.html")


# Where each role lands after logging in. Pages replace "home" with their dashboard.
START_PAGES = {
    "patient": "home",
    "practitioner": "booking_staff:schedule",
    "clinic_admin": "booking_staff:clinic",
    "auditor": "audit_staff:events",
}


@login_required
def start(request):
    """The landing page after login: the dashboard of the user's role."""
    return redirect(START_PAGES.get(request.user.role, "home"))


def server_error(request):
    """A 500 that shows nothing of the request: JSON under /api, a plain page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(
            {"detail": "Internal server error.", "code": "server_error"}, status=500
        )
    return render(request, "500.html", status=500)
