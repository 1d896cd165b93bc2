"""The patient's forms of the booking pages: search, book, erasure confirmation."""

import datetime

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic
from booking.models import Specialty
from patterm.web import DateInput
from vault.models import InsuranceType

SEARCH_MAX_DAYS_AHEAD = 730
MESSAGE_SEARCH_TOO_FAR = _("Please choose a day within the next two years.")


class SearchForm(forms.Form):
    """Specialty, city, insurance type, been there before, first day. Whether the patient has
    been at a clinic before is asked only of visitors: for a signed-in patient the portal
    knows it (a care relationship), so the field is left out (`ask_known=False`)."""

    specialty = forms.ChoiceField(label=_("Specialty"), required=False)
    city = forms.ChoiceField(label=_("City"), required=False)
    insurance_type = forms.ChoiceField(label=_("Insurance"), required=False)
    patient_status = forms.ChoiceField(
        label=_("Been there before?"),
        required=False,
        choices=[
            ("", _("Not saying")),
            ("new", _("No, I am a new patient")),
            ("known", _("Yes, I have been there before")),
        ],
    )
    date = forms.DateField(
        label=_("From"),
        required=False,
        widget=DateInput(),
        help_text=_("The first day of the week shown; empty: from today."),
    )

    def clean_date(self):
        day = self.cleaned_data["date"]
        if day and day > timezone.localdate() + datetime.timedelta(days=SEARCH_MAX_DAYS_AHEAD):
            raise forms.ValidationError(MESSAGE_SEARCH_TOO_FAR)
        return day

    def __init__(self, *args, ask_known: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not ask_known:
            del self.fields["patient_status"]
        self.fields["insurance_type"].choices = [("", _("Any insurance")), *InsuranceType.choices]
        specialties = sorted(Specialty.objects.all(), key=lambda s: s.name)
        self.fields["specialty"].choices = [("", _("All specialties"))] + [
            (s.slug, s.name) for s in specialties
        ]
        cities = Clinic.objects.order_by("city").values_list("city", flat=True).distinct()
        self.fields["city"].choices = [("", _("All cities"))] + [(c, c) for c in cities]


class BookForm(forms.Form):
    """Book one slot. An account holder with relatives chooses for whom (decision 0014)."""

    reason = forms.CharField(
        label=_("Reason for the visit"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Optional. Only you and the clinic's staff see it; it is stored encrypted."),
    )

    def __init__(self, *args, relatives=(), **kwargs):
        super().__init__(*args, **kwargs)
        if relatives:
            self.fields["for_whom"] = forms.ChoiceField(
                label=_("For whom"),
                choices=[("", _("For me"))]
                + [(str(r.id), f"{r.profile.first_name} {r.profile.last_name}") for r in relatives],
                required=False,
            )
            self.order_fields(["for_whom", "reason"])


class ErasureForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("I understand what stays and what goes, and I want my account closed now."),
        error_messages={"required": _("Tick the box to confirm.")},
    )


class WaitlistJoinForm(forms.Form):
    """Join a waitlist: a specialty, optionally a city, a clinic and a range of days. The
    service (booking.waitlist.waitlist_join) checks the rules; its field errors land here."""

    specialty = forms.ChoiceField(label=_("Specialty"))
    city = forms.ChoiceField(label=_("City"), required=False)
    clinic = forms.TypedChoiceField(label=_("Clinic"), required=False, coerce=int, empty_value=None)
    date_from = forms.DateField(label=_("From"), required=False, widget=DateInput())
    date_to = forms.DateField(
        label=_("Until"),
        required=False,
        widget=DateInput(),
        help_text=_("Optional: the days you could come; empty: any day."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        specialties = sorted(Specialty.objects.all(), key=lambda s: s.name)
        self.fields["specialty"].choices = [("", _("Choose a specialty"))] + [
            (s.slug, s.name) for s in specialties
        ]
        cities = Clinic.objects.order_by("city").values_list("city", flat=True).distinct()
        self.fields["city"].choices = [("", _("Any city"))] + [(c, c) for c in cities]
        clinics = Clinic.objects.order_by("name").values_list("pk", "name", "city")
        self.fields["clinic"].choices = [("", _("Any clinic"))] + [
            (pk, f"{name}, {city}") for pk, name, city in clinics
        ]


class BookMotiveForm(BookForm):
    """Booking a visit motive: the reason, and how the patient is insured when the motive is
    not open to every insurance type (prefilled from the profile)."""

    insurance_type = forms.ChoiceField(label=_("Insurance"), required=False)

    def __init__(self, *args, ask_insurance: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if ask_insurance:
            self.fields["insurance_type"].choices = [("", _("Choose")), *InsuranceType.choices]
            self.fields["insurance_type"].required = True
        else:
            del self.fields["insurance_type"]
