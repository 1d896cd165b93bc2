from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Clinic
from consent.models import RecordCategory
from patterm.web import DateInput


class ClinicChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, clinic):
        return f"{clinic.name} ({clinic.city})"


class ConsentForm(forms.Form):
    """Grant a consent; the rules (known clinics, categories, end date) are the service's."""

    grantee_clinic = ClinicChoiceField(
        label=_("Clinic that may see"),
        queryset=Clinic.objects.order_by("name", "pk"),
        empty_label=_("Choose a clinic"),
    )
    source_clinic = ClinicChoiceField(
        label=_("Entries written by"),
        queryset=Clinic.objects.order_by("name", "pk"),
        required=False,
        empty_label=_("Any clinic"),
    )
    categories = forms.MultipleChoiceField(
        label=_("Categories"),
        choices=RecordCategory.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    valid_until = forms.DateField(
        label=_("Valid until"),
        required=False,
        widget=DateInput(),
        help_text=_("Empty: until you revoke it."),
    )
