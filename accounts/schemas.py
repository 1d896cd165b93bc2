import datetime
import re
from typing import Literal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from ninja import Field, Schema
from pydantic import field_validator

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def clean_email(value: str) -> str:
    value = value.strip()
    try:
        validate_email(value)
    except ValidationError:
        raise ValueError("Enter a valid e-mail address.") from None
    return value


def clean_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("This field may not be blank.")
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("Control characters are not allowed.")
    return value


def clean_iso_date(value: object) -> object:
    """Only YYYY-MM-DD strings: no timestamps, no German `01.01.1990`."""
    if isinstance(value, str) and _ISO_DATE.match(value):
        return value
    raise ValueError("Enter a date as YYYY-MM-DD.")


class RegisterIn(Schema):
    email: str = Field(..., max_length=254)
    password: str = Field(..., min_length=1, max_length=settings.PATTERM_PASSWORD_MAX_LENGTH)
    first_name: str = Field(..., max_length=100)
    last_name: str = Field(..., max_length=100)
    date_of_birth: datetime.date
    language: Literal["de", "en"] | None = Field(
        None, description="Language of Patterm's e-mails; default: the request's, else German."
    )

    _email = field_validator("email")(clean_email)
    _names = field_validator("first_name", "last_name")(clean_name)
    _date_format = field_validator("date_of_birth", mode="before")(clean_iso_date)

    @field_validator("date_of_birth")
    @classmethod
    def _plausible_birth_date(cls, value: datetime.date) -> datetime.date:
        if not datetime.date(1900, 1, 1) <= value <= datetime.date.today():
            raise ValueError("The date of birth must lie between 1900-01-01 and today.")
        return value


class MeIn(Schema):
    language: Literal["de", "en"] = Field(..., description="Language of Patterm's e-mails.")


class LoginIn(Schema):
    email: str = Field(..., max_length=254)
    password: str = Field(..., max_length=settings.PATTERM_PASSWORD_MAX_LENGTH)
    # The authenticator app's 6 digits, or a recovery code; needed once the account has a device.
    otp: str = Field("", max_length=32)
    # SMART v2 scopes (space-separated): a token for the FHIR API at /fhir/R4/ (docs/fhir.md).
    scope: str | None = Field(
        None,
        max_length=1000,
        description="SMART v2 scopes such as `patient/*.rs`: a token for /fhir/R4/ only.",
    )


class SessionOut(Schema):
    id: str
    kind: str
    device: str
    address: str | None
    created_at: datetime.datetime
    last_seen_at: datetime.datetime
    expires_at: datetime.datetime
    current: bool


class LogoutAllOut(Schema):
    ended: int


class PasswordChangeIn(Schema):
    current_password: str = Field(..., max_length=settings.PATTERM_PASSWORD_MAX_LENGTH)
    new_password: str = Field(..., min_length=1, max_length=settings.PATTERM_PASSWORD_MAX_LENGTH)


class OtpEnrolmentOut(Schema):
    otpauth_uri: str
    qr_svg: str


class OtpConfirmIn(Schema):
    otp: str = Field(..., max_length=32)


class RecoveryCodesOut(Schema):
    recovery_codes: list[str]


class ClinicRef(Schema):
    id: int
    name: str
    slug: str
    city: str


class MembershipOut(Schema):
    clinic: ClinicRef
    role: str


class UserOut(Schema):
    id: int
    email: str
    role: str
    first_name: str
    last_name: str
    language: str
    memberships: list[MembershipOut]


class TokenOut(Schema):
    token: str
    expires_at: datetime.datetime
    scope: str | None = None
    user: UserOut


class ClinicOut(Schema):
    id: int
    name: str
    slug: str
    city: str
    address: str
