from django import forms
from django.utils.translation import gettext_lazy as _

from audit.models import AuditAction


class DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]


class EventFilterForm(forms.Form):
    """The filters of GET /api/audit/events; times on Berlin's wall clock."""

    since = forms.DateTimeField(
        label=_("From"), required=False, input_formats=FORMATS, widget=DateTimeInput()
    )
    until = forms.DateTimeField(
        label=_("Until (exclusive)"), required=False, input_formats=FORMATS, widget=DateTimeInput()
    )
    action = forms.ChoiceField(
        label=_("Action"), required=False, choices=[("", _("All actions")), *AuditAction.choices]
    )
    actor = forms.IntegerField(
        label=_("Actor (user number)"), required=False, min_value=1, max_value=2**62
    )
