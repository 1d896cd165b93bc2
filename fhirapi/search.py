"""The FHIR read API's search parameters: which each type takes, and their values parsed.

Strict handling (FHIR R4, http.html#search and search.html#errors): an unknown parameter, a
modifier or a prefix Patterm does not support, or a malformed value is a 400 OperationOutcome.
With `Prefer: handling=lenient`, unknown parameters are dropped and named in a warning; a
malformed value of a known parameter stays a 400.
"""

import datetime
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from patterm.numbers import ascii_int

# Parameter -> its FHIR search type, per resource type; the CapabilityStatement lists these.
SEARCH_PARAMETERS: dict[str, dict[str, str]] = {
    "Patient": {"_id": "token"},
    "Condition": {
        "_id": "token",
        "patient": "reference",
        "code": "token",
        "category": "token",
        "recorded-date": "date",
    },
    "AllergyIntolerance": {"_id": "token", "patient": "reference", "code": "token", "date": "date"},
    "MedicationStatement": {"_id": "token", "patient": "reference", "code": "token"},
    "Observation": {
        "_id": "token",
        "patient": "reference",
        "code": "token",
        "category": "token",
        "date": "date",
    },
    "Appointment": {"_id": "token", "patient": "reference", "date": "date", "status": "token"},
    "Slot": {"_id": "token", "schedule": "reference", "start": "date", "status": "token"},
    "Schedule": {"_id": "token", "actor": "reference"},
    "Practitioner": {"_id": "token", "name": "string"},
    "Organization": {"_id": "token", "name": "string"},
    "Location": {"_id": "token", "organization": "reference", "address-city": "string"},
}
# What each parameter means, for the CapabilityStatement.
PARAMETER_DOCUMENTATION = {
    "_id": "The resource's id.",
    "patient": "The patient (Patient/<id> or <id>) the resource is about.",
    "code": "A code (system|code or code) of the entry: ICD-10-GM, ATC, PZN, SNOMED CT, LOINC.",
    "category": "The category (system|code or code).",
    "date": "When it was recorded (Observation: effective; Appointment: start); eq, ge, le, "
    "gt, lt prefixes.",
    "recorded-date": "When the diagnosis was recorded; eq, ge, le, gt, lt prefixes.",
    "status": "The status code.",
    "schedule": "The Schedule (Schedule/<id> or <id>) the slot belongs to.",
    "start": "When the slot starts; eq, ge, le, gt, lt prefixes.",
    "actor": "The practitioner (Practitioner/<id> or <id>) or clinic (Location/<id>).",
    "name": "The start of a name (of any of its words for a practitioner), any case.",
    "organization": "The clinic (Organization/<id> or <id>) the location belongs to.",
    "address-city": "The start of the city, any case.",
}
RESULT_PARAMETERS = ("_count", "_offset")
# R4's general parameters of every interaction, checked by the API before the search is parsed
# (fhirapi/api.py _negotiate), not search parameters.
GENERAL_PARAMETERS = ("_format", "_pretty")
COUNT_DEFAULT, COUNT_MAX = 20, 100
DATE_PREFIXES = ("eq", "ge", "le", "gt", "lt")

MESSAGE_UNKNOWN_PARAMETER = _("Unknown search parameter %(name)s for %(type)s.")
MESSAGE_IGNORED_PARAMETERS = _("Ignored unknown search parameters: %(names)s.")
MESSAGE_BAD_COUNT = _("_count must be a whole number from 1 to %(max)s.")
MESSAGE_BAD_OFFSET = _("_offset must be a whole number from 0.")
MESSAGE_REPEATED = _("%(name)s may be given once.")
MESSAGE_BAD_DATE = _(
    "%(name)s: %(value)s is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a date and time "
    "with its time zone), optionally after eq, ge, le, gt or lt."
)
MESSAGE_BAD_REFERENCE = _("%(name)s: %(value)s is not a reference such as %(example)s.")
MESSAGE_EMPTY_VALUE = _("%(name)s has no value.")

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))?)?)?")


class FhirError(Exception):
    """A request the FHIR API answers with an OperationOutcome: the HTTP status, the issue
    type (http://hl7.org/fhir/R4/valueset-issue-type.html) and a readable diagnostic."""

    def __init__(self, status: int, code: str, diagnostics):
        super().__init__(str(diagnostics))
        self.status, self.code, self.diagnostics = status, code, diagnostics


def invalid(message, **values) -> FhirError:
    return FhirError(400, "invalid", str(message) % values if values else str(message))


@dataclass(frozen=True)
class DateRange:
    """The instants a date search value covers: from `start` (inclusive) to `end` (exclusive),
    either open."""

    start: datetime.datetime | None
    end: datetime.datetime | None

    def contains(self, instant: datetime.datetime) -> bool:
        return (self.start is None or instant >= self.start) and (
            self.end is None or instant < self.end
        )

    def as_lookups(self, field_name: str) -> dict:
        lookups = {}
        if self.start is not None:
            lookups[f"{field_name}__gte"] = self.start
        if self.end is not None:
            lookups[f"{field_name}__lt"] = self.end
        return lookups


@dataclass(frozen=True)
class Token:
    system: str | None  # None: any system
    code: str

    def matches(self, coding: dict) -> bool:
        return coding.get("code") == self.code and (
            self.system is None or coding.get("system") == self.system
        )


@dataclass
class Search:
    """A parsed search: each parameter's values (one list per occurrence: occurrences AND,
    comma-separated values OR), the page, and warnings of lenient handling."""

    resource_type: str
    values: dict[str, list[list]] = field(default_factory=dict)
    count: int = COUNT_DEFAULT
    offset: int = 0
    warnings: list[str] = field(default_factory=list)

    def one(self, name: str):
        """The values of a parameter given at most once (OR of its comma-separated values)."""
        occurrences = self.values.get(name)
        if not occurrences:
            return None
        if len(occurrences) > 1:
            raise invalid(MESSAGE_REPEATED, name=name)
        return occurrences[0]

    def all(self, name: str) -> list[list]:
        return self.values.get(name, [])


def _local_start(year: int, month: int, day: int) -> datetime.datetime:
    return datetime.datetime(year, month, day, tzinfo=ZoneInfo(settings.TIME_ZONE))


def date_range(name: str, raw: str) -> DateRange:
    """A date search value (`ge2026-01-01`, `2026-03`, `lt2026-01-01T10:00:00+01:00`) as the
    range of instants it selects. A date without a time is a local (clinic) calendar span."""
    prefix, value = ("eq", raw)
    if raw[:2].isalpha():
        prefix, value = raw[:2], raw[2:]
    match = _DATE.fullmatch(value)
    if prefix not in DATE_PREFIXES or match is None:
        raise invalid(MESSAGE_BAD_DATE, name=name, value=raw)
    year, month, day, time = match.groups()
    try:
        if time:
            start = datetime.datetime.fromisoformat(f"{year}-{month}-{day}{time}")
            end = start + datetime.timedelta(microseconds=1)
            if "." not in time:  # to the second
                end = start + datetime.timedelta(seconds=1)
        elif day:
            start = _local_start(int(year), int(month), int(day))
            end = _local_start(*(start.date() + datetime.timedelta(days=1)).timetuple()[:3])
        elif month:
            start = _local_start(int(year), int(month), 1)
            following = (int(year) + int(month) // 12, int(month) % 12 + 1)
            end = _local_start(*following, 1)
        else:
            start, end = _local_start(int(year), 1, 1), _local_start(int(year) + 1, 1, 1)
    except ValueError:  # 2026-13, 2026-02-30, 25:00
        raise invalid(MESSAGE_BAD_DATE, name=name, value=raw) from None
    return {
        "eq": DateRange(start, end),
        "ge": DateRange(start, None),
        "gt": DateRange(end, None),
        "le": DateRange(None, end),
        "lt": DateRange(None, start),
    }[prefix]


def token(name: str, raw: str) -> Token:
    system, _bar, code = raw.rpartition("|")
    if not code:
        raise invalid(MESSAGE_EMPTY_VALUE, name=name)
    return Token(system or None, code)  # `code` and `|code`: any system


def reference_id(name: str, raw: str, *types: str) -> tuple[str, int]:
    """(type, id) of a reference search value: `Patient/7` or `7` (the first of `types`).
    Patterm's ids behind these references are whole numbers; anything else is malformed."""
    kind, slash, key = raw.rpartition("/")
    kind = kind if slash else types[0]
    number = ascii_int(key)
    if kind not in types or number is None:
        raise invalid(MESSAGE_BAD_REFERENCE, name=name, value=raw, example=f"{types[0]}/7")
    return kind, number


def search_parse(resource_type: str, query, *, lenient: bool) -> Search:
    """The search of `query` (a QueryDict) on `resource_type`, or a FhirError."""
    known = SEARCH_PARAMETERS[resource_type]
    search = Search(resource_type)
    ignored = []
    for name in sorted(query.keys()):
        raws = query.getlist(name)
        if name in GENERAL_PARAMETERS:
            continue
        if name == "_count":
            if len(raws) > 1:
                raise invalid(MESSAGE_REPEATED, name=name)
            count = ascii_int(raws[0])
            if count is None or not 1 <= count <= COUNT_MAX:
                raise invalid(MESSAGE_BAD_COUNT, max=COUNT_MAX)
            search.count = count
            continue
        if name == "_offset":
            if len(raws) > 1:
                raise invalid(MESSAGE_REPEATED, name=name)
            offset = ascii_int(raws[0])
            if offset is None:
                raise invalid(MESSAGE_BAD_OFFSET)
            search.offset = offset
            continue
        kind = known.get(name)
        if kind is None:  # also every name with a modifier (patient:Patient, code:text)
            if lenient:
                ignored.append(name)
                continue
            raise FhirError(
                400,
                "not-supported",
                str(MESSAGE_UNKNOWN_PARAMETER) % {"name": name, "type": resource_type},
            )
        occurrences = []
        for raw in raws:
            values = raw.split(",")
            if not raw or not all(values):
                raise invalid(MESSAGE_EMPTY_VALUE, name=name)
            if kind == "date":
                occurrences.append([date_range(name, value) for value in values])
            elif kind == "token":
                occurrences.append([token(name, value) for value in values])
            else:
                occurrences.append(values)  # references and strings: read by the operation
        search.values[name] = occurrences
    if ignored:
        search.warnings.append(str(MESSAGE_IGNORED_PARAMETERS) % {"names": ", ".join(ignored)})
    return search


def id_values(search: Search) -> set[str] | None:
    """The ids `_id` asks for (all its occurrences must hold), or None: any."""
    occurrences = search.all("_id")
    if not occurrences:
        return None
    wanted = None
    for values in occurrences:
        ids = {value.code for value in values if value.system is None}
        wanted = ids if wanted is None else wanted & ids
    return wanted


def dates_match(search: Search, name: str, instant: datetime.datetime) -> bool:
    return all(any(r.contains(instant) for r in values) for values in search.all(name))


def tokens_match(search: Search, name: str, codings: list[dict]) -> bool:
    return all(
        any(t.matches(coding) for t in values for coding in codings) for values in search.all(name)
    )
