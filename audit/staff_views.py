"""The auditor's pages: the event list with filters (the service of GET /api/audit/events,
audited the same) and chain verification (the service of GET /api/audit/verify)."""

from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import Role
from audit.models import AuditAction
from audit.services import events_read, verification_run
from audit.staff_forms import EventFilterForm
from patterm.web import role_required

PER_PAGE = 50
SESSION_KEY = "audit_verification"


@role_required(Role.AUDITOR)
def events(request):
    form = EventFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    page_obj = None
    if not form.is_bound or form.is_valid():
        listed = events_read(
            actor=request.user,
            since=filters.get("since"),
            until=filters.get("until"),
            action=filters.get("action") or None,
            actor_id=filters.get("actor"),
        )
        page_obj = Paginator(listed, PER_PAGE).get_page(request.GET.get("page"))
        labels = dict(AuditAction.choices)
        page_obj.object_list = list(page_obj.object_list)
        for event in page_obj.object_list:
            event.action_label = labels.get(event.action, event.action)
    return render(request, "audit/staff/events.html", {"form": form, "page_obj": page_obj})


@role_required(Role.AUDITOR)
def verify(request):
    """The last verification's result (of this session), and the button to run one."""
    return render(request, "audit/staff/verify.html", {"result": request.session.get(SESSION_KEY)})


@require_POST
@role_required(Role.AUDITOR)
def verify_run(request):
    result = verification_run(actor=request.user)
    request.session[SESSION_KEY] = result.as_dict()
    return redirect("audit_staff:verify")
