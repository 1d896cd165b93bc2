"""The code systems a record entry's optional code belongs to, by category, and their formats.

Only the shape is checked (and PZN's check digit): Patterm ships no terminology server, so a
well-formed code that does not exist in the catalogue is accepted; its text is always kept.
"""

import re
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class CodeSystem:
    name: str
    url: str  # the FHIR system URI (the German ones from fhir.de)
    pattern: re.Pattern


ICD_10_GM = CodeSystem(
    "ICD-10-GM",
    "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
    # A letter, two digits, optionally a dot and one or two digits; † * ! mark Kreuz-Stern codes.
    re.compile(r"[A-Z][0-9]{2}(\.[0-9]{1,2})?[†*!+]?"),
)
ATC = CodeSystem(
    "ATC", "http://fhir.de/CodeSystem/bfarm/atc", re.compile(r"[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}")
)
PZN = CodeSystem("PZN", "http://fhir.de/CodeSystem/ifa/pzn", re.compile(r"[0-9]{8}"))
LOINC = CodeSystem("LOINC", "http://loinc.org", re.compile(r"[0-9]{1,5}-[0-9]"))
SNOMED_CT = CodeSystem("SNOMED CT", "http://snomed.info/sct", re.compile(r"[1-9][0-9]{5,17}"))

SYSTEMS_BY_CATEGORY = {
    "diagnosis": (ICD_10_GM,),
    "medication": (ATC, PZN),
    "allergy": (SNOMED_CT,),
    "lab_result": (LOINC,),
}

MESSAGE_NO_CODE = _("Notes and documents carry no code.")
MESSAGE_BAD_CODE = _("This is not a valid %(systems)s code (for example %(example)s).")
EXAMPLES = {
    "diagnosis": "I10.90",
    "medication": "C09AA05",
    "allergy": "91936005",
    "lab_result": "4548-4",
}


def _pzn_check_digit_ok(code: str) -> bool:
    digits = [int(c) for c in code]
    check = sum(weight * digit for weight, digit in enumerate(digits[:7], start=1)) % 11
    return check != 10 and check == digits[7]


def code_system(category: str, code: str) -> CodeSystem | None:
    """The system `code` belongs to for an entry of `category`, or None if it fits none."""
    for system in SYSTEMS_BY_CATEGORY.get(category, ()):
        if system.pattern.fullmatch(code) and (system is not PZN or _pzn_check_digit_ok(code)):
            return system
    return None


def code_error(category: str, code: str) -> str | None:
    """The field error for `code` on an entry of `category`, or None if it is acceptable."""
    systems = SYSTEMS_BY_CATEGORY.get(category)
    if not systems:
        return str(MESSAGE_NO_CODE)
    if code_system(category, code) is None:
        return str(
            MESSAGE_BAD_CODE
            % {"systems": " / ".join(s.name for s in systems), "example": EXAMPLES[category]}
        )
    return None
