"""The patient's forms of the booking pages: search, book, erasure confirmation."""

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic
from booking.models import Specialty
from patterm.web import DateInput


class SearchForm(forms.Form):
    specialty = forms.ChoiceField(label=_("Specialty"), required=False)
    city = forms.ChoiceField(label=_("City"), required=False)
    date = forms.DateField(
        label=_("From"),
        required=False,
        widget=DateInput(),
        help_text=_("The first day to look at; empty: from today."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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
