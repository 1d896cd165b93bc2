from django import forms
from django.utils.translation import gettext_lazy as _

from consent.models import RecordCategory
from vault.services import EMERGENCY_JUSTIFICATION_MAX_LENGTH, EMERGENCY_JUSTIFICATION_MIN_LENGTH


class PatientLookupForm(forms.Form):
    patient = forms.IntegerField(
        label=_("Patient number"),
        min_value=1,
        max_value=2**62,
        help_text=_("The number on the patient's appointment or card."),
    )


class EntryForm(forms.Form):
    """The fields of POST /api/medical/patients/{id}/entries (vault/schemas.py EntryIn)."""

    category = forms.ChoiceField(label=_("Category"), choices=RecordCategory.choices)
    title = forms.CharField(label=_("Title"), max_length=200)
    body = forms.CharField(
        label=_("Text"), max_length=20_000, widget=forms.Textarea(attrs={"rows": 5})
    )
    # Checked against the category's code systems by the service (vault/coding.py).
    code = forms.CharField(
        label=_("Code"),
        required=False,
        max_length=20,
        help_text=_(
            "Optional. Diagnosis: ICD-10-GM (I10.90); medication: ATC (C09AA05) or PZN; "
            "allergy: SNOMED CT; lab result: LOINC (4548-4)."
        ),
    )


class EmergencyForm(forms.Form):
    justification = forms.CharField(
        label=_("Justification"),
        min_length=EMERGENCY_JUSTIFICATION_MIN_LENGTH,
        max_length=EMERGENCY_JUSTIFICATION_MAX_LENGTH,
        help_text=_(
            "Why treating this patient needs their record now (at least 20 characters). "
            "The patient is told by e-mail, and your clinic admin reviews it."
        ),
        widget=forms.Textarea(attrs={"rows": 4}),
    )
