"""Forms of the staff pages of booking: they parse what a person typed; the rules stay in
booking/services.py."""

import datetime

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from booking.models import MotivePatients, Specialty, Weekday


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", **kwargs)


class DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


def _local_datetime_field(label, **kwargs):
    return forms.DateTimeField(
        label=label,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        widget=DateTimeInput(),
        **kwargs,
    )


class ScheduleForm(forms.Form):
    """Which week to show: from a day on, seven days."""

    date_from = forms.DateField(
        label=_("Week from"), required=False, widget=DateInput(), input_formats=["%Y-%m-%d"]
    )

    def first_day(self) -> datetime.date:
        if self.is_valid() and self.cleaned_data["date_from"]:
            return self.cleaned_data["date_from"]
        return timezone.localdate()


class PractitionerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, membership):
        name = f"{membership.user.first_name} {membership.user.last_name}".strip()
        return f"{name or membership.user.email} · {membership.clinic.name}"


class _ForPractitioner(forms.Form):
    practitioner = PractitionerChoiceField(label=_("Practitioner"), queryset=None)

    def __init__(self, *args, practitioners, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["practitioner"].queryset = practitioners


class OpeningHoursForm(_ForPractitioner):
    weekday = forms.TypedChoiceField(label=_("Weekday"), choices=Weekday.choices, coerce=int)
    start_time = forms.TimeField(label=_("From"), widget=TimeInput())
    end_time = forms.TimeField(label=_("Until"), widget=TimeInput())
    slot_minutes = forms.IntegerField(
        label=_("Slot length (minutes)"), initial=20, min_value=5, max_value=240
    )
    specialty = forms.ModelChoiceField(
        label=_("Specialty"), queryset=Specialty.objects.order_by("slug")
    )


class AbsenceForm(_ForPractitioner):
    starts_at = _local_datetime_field(_("From"))
    ends_at = _local_datetime_field(_("Until"))


class SlotSeriesForm(_ForPractitioner):
    specialty = forms.ModelChoiceField(
        label=_("Specialty"), queryset=Specialty.objects.order_by("slug")
    )
    date_from = forms.DateField(label=_("First day"), widget=DateInput())
    date_to = forms.DateField(label=_("Last day"), widget=DateInput())
    start_time = forms.TimeField(label=_("Daily from"), widget=TimeInput())
    end_time = forms.TimeField(label=_("Daily until"), widget=TimeInput())
    slot_minutes = forms.IntegerField(
        label=_("Slot length (minutes)"), initial=20, min_value=5, max_value=240
    )
    weekdays = forms.TypedMultipleChoiceField(
        label=_("Weekdays"),
        choices=Weekday.choices,
        coerce=int,
        initial=[0, 1, 2, 3, 4],
        widget=forms.CheckboxSelectMultiple,
    )


class VisitMotiveForm(_ForPractitioner):
    """A visit motive (Besuchsgrund). Which insurance types it takes are three ticks; the
    service (booking.services.motive_add) checks the model's rules."""

    specialty = forms.ModelChoiceField(
        label=_("Specialty"), queryset=Specialty.objects.order_by("slug")
    )
    name_de = forms.CharField(label=_("Name (German)"), max_length=100)
    name_en = forms.CharField(label=_("Name (English)"), max_length=100)
    duration_minutes = forms.IntegerField(
        label=_("Duration (minutes)"),
        initial=20,
        min_value=5,
        max_value=480,
        help_text=_("Longer than one slot: the booking takes the consecutive slots it needs."),
    )
    bookable_online = forms.BooleanField(label=_("Bookable online"), required=False, initial=True)
    patients = forms.ChoiceField(
        label=_("For"), choices=MotivePatients.choices, initial=MotivePatients.BOTH
    )
    accepts_statutory = forms.BooleanField(
        label=_("Statutory insurance (gesetzlich)"), required=False, initial=True
    )
    accepts_private = forms.BooleanField(
        label=_("Private insurance (privat)"), required=False, initial=True
    )
    accepts_self_pay = forms.BooleanField(
        label=_("Self-paying (Selbstzahler)"), required=False, initial=True
    )
    note_de = forms.CharField(
        label=_("Note before booking (German)"),
        max_length=300,
        required=False,
        help_text=_("Shown to the patient before they book, e.g. „Bitte Überweisung mitbringen“."),
    )
    note_en = forms.CharField(
        label=_("Note before booking (English)"), max_length=300, required=False
    )

    def clean(self):
        data = super().clean()
        if not any(
            data.get(f) for f in ("accepts_statutory", "accepts_private", "accepts_self_pay")
        ):
            self.add_error(
                "accepts_statutory", _("Tick at least one insurance type the motive accepts.")
            )
        return data
