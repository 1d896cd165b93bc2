import datetime

from django import forms
from django.conf import settings
from django.contrib.auth.password_validation import password_validators_help_texts
from django.core.validators import RegexValidator
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from consent.models import Relationship
from patterm.web import DateInput
from vault.models import InsuranceType, validate_kvnr
from vault.relatives import (
    EARLIEST_BIRTH,
    MESSAGE_BIRTH_IN_FUTURE,
    MESSAGE_BIRTH_TOO_EARLY,
    MESSAGE_CONTROL_CHARACTERS,
)

no_control_characters = RegexValidator(
    r"[\x00-\x1f\x7f]", message=MESSAGE_CONTROL_CHARACTERS, inverse_match=True
)


def birth_date_checked(born: datetime.date) -> datetime.date:
    """A date of birth that can be one: not in the future, not before 1900."""
    if born > timezone.localdate():
        raise forms.ValidationError(MESSAGE_BIRTH_IN_FUTURE)
    if born < EARLIEST_BIRTH:
        raise forms.ValidationError(MESSAGE_BIRTH_TOO_EARLY)
    return born


class SignupForm(forms.Form):
    """A patient's sign-up. The password is never sent back into the page."""

    first_name = forms.CharField(
        label=_("First name"),
        max_length=100,
        validators=[no_control_characters],
        widget=forms.TextInput(attrs={"autocomplete": "given-name"}),
    )
    last_name = forms.CharField(
        label=_("Last name"),
        max_length=100,
        validators=[no_control_characters],
        widget=forms.TextInput(attrs={"autocomplete": "family-name"}),
    )
    date_of_birth = forms.DateField(
        label=_("Date of birth"), widget=DateInput(attrs={"autocomplete": "bday"})
    )
    email = forms.EmailField(
        label=_("E-mail address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    password = forms.CharField(
        label=_("Password"),
        max_length=settings.PATTERM_PASSWORD_MAX_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["password"].help_text = " ".join(
            str(text) for text in password_validators_help_texts()
        )

    def clean_date_of_birth(self):
        return birth_date_checked(self.cleaned_data["date_of_birth"])


class TakeoverForm(forms.Form):
    """A relative taking over their record chooses their password (the service checks it)."""

    password = forms.CharField(
        label=_("Password"),
        max_length=settings.PATTERM_PASSWORD_MAX_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_repeat = forms.CharField(
        label=_("Password again"),
        max_length=settings.PATTERM_PASSWORD_MAX_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["password"].help_text = " ".join(
            str(text) for text in password_validators_help_texts()
        )

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("password_repeat"):
            self.add_error("password_repeat", _("The two passwords differ."))
        return data


class InvitationForm(forms.Form):
    email = forms.EmailField(
        label=_("Your relative's own e-mail address"),
        max_length=254,
        help_text=_("The invitation link goes there; it becomes their login."),
    )


class InsuranceFieldsMixin(forms.Form):
    """The insurance fields of a patient's profile (issue 16): type, insurer, and the
    Krankenversichertennummer, checked with its check digit. A form for any patient (the
    account holder, a relative) mixes this in; `insurance_values()` gives what the service
    stores (encrypted on vault.models.PatientProfile)."""

    insurance_type = forms.ChoiceField(label=_("Insurance type"), required=False, choices=[])
    insurer_name = forms.CharField(
        label=_("Insurer"),
        max_length=100,
        required=False,
        validators=[no_control_characters],
        help_text=_("e.g. AOK Nordost, Techniker Krankenkasse"),
    )
    insurance_number = forms.CharField(
        label=_("Health insurance number (Krankenversichertennummer)"),
        max_length=20,
        required=False,
        help_text=_("10 characters, on the insurance card: a capital letter and nine digits."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["insurance_type"].choices = [("", _("Not given")), *InsuranceType.choices]

    def clean_insurance_number(self):
        number = "".join(self.cleaned_data["insurance_number"].split()).upper()
        if number:
            validate_kvnr(number)
        return number

    def insurance_values(self) -> dict:
        return {
            "insurance_type": self.cleaned_data["insurance_type"] or None,
            "insurer_name": self.cleaned_data["insurer_name"] or None,
            "insurance_number": self.cleaned_data["insurance_number"] or None,
        }


class InsuranceForm(InsuranceFieldsMixin):
    """The patient's own insurance page."""


class RelativeForm(InsuranceFieldsMixin):
    """Add a relative: name, date of birth, relationship and, optionally, their insurance (the
    service checks the rules too)."""

    first_name = forms.CharField(
        label=_("First name"), max_length=100, validators=[no_control_characters]
    )
    last_name = forms.CharField(
        label=_("Last name"), max_length=100, validators=[no_control_characters]
    )
    date_of_birth = forms.DateField(label=_("Date of birth"), widget=DateInput())
    relationship = forms.ChoiceField(label=_("Relationship"), choices=Relationship.choices)

    field_order = ["first_name", "last_name", "date_of_birth", "relationship"]

    def clean_date_of_birth(self):
        return birth_date_checked(self.cleaned_data["date_of_birth"])
