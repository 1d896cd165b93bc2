"""The CapabilityStatement of /fhir/R4/metadata: exactly what fhirapi serves, built from the
same tables the API answers from (search.SEARCH_PARAMETERS, accounts.scopes)."""

from django.conf import settings

from accounts.scopes import FHIR_DIRECTORY_TYPES, FHIR_RESOURCE_TYPES
from fhirapi.search import COUNT_MAX, PARAMETER_DOCUMENTATION, RESULT_PARAMETERS, SEARCH_PARAMETERS

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"
# Released with the code: the statement describes this build, not a point in time.
STATEMENT_DATE = "2026-12-03"


def _documentation(resource_type: str) -> str:
    scopes = f"Scopes: patient/{resource_type}.rs or user/{resource_type}.rs; r reads, s searches."
    if resource_type in FHIR_DIRECTORY_TYPES:
        return (
            "Public directory data, as the portal's search shows it (names, clinic names and "
            f"addresses; no e-mail, phone or anything else). {scopes}"
        )
    return f"A patient's own data with patient/ scopes, what consent allows with user/. {scopes}"


def capability_statement(base_url: str) -> dict:
    resources = []
    for resource_type in FHIR_RESOURCE_TYPES:
        parameters = [
            {
                "name": name,
                "type": kind,
                "documentation": PARAMETER_DOCUMENTATION[name],
            }
            for name, kind in SEARCH_PARAMETERS[resource_type].items()
        ]
        resources.append(
            {
                "type": resource_type,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "versioning": "no-version",
                "readHistory": False,
                "updateCreate": False,
                "conditionalCreate": False,
                "conditionalRead": "not-supported",
                "conditionalUpdate": False,
                "conditionalDelete": "not-supported",
                "searchParam": parameters,
                "documentation": _documentation(resource_type),
            }
        )
    public_url = settings.PATTERM_PUBLIC_URL.rstrip("/")
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "Patterm",
        "kind": "instance",
        "software": {"name": "Patterm"},
        "implementation": {"description": "Patterm FHIR read API", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read and search only. Unknown search parameters are refused (400) unless "
                    "the request says Prefer: handling=lenient. Paging: _count (1 to "
                    f"{COUNT_MAX}, default 20) and the next link's _offset "
                    f"({', '.join(RESULT_PARAMETERS)}). JSON only: _format=json or an Accept "
                    "header admitting application/fhir+json; XML is a 406. _pretty=true indents."
                ),
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": (
                        "Bearer tokens with SMART App Launch v2 scopes (patient/*.rs, "
                        "user/*.rs, patient/Condition.rs, ...), issued by "
                        f"POST {public_url}/api/auth/login with a scope. Every read of "
                        "medical data is decided by the patient's consents and audited."
                    ),
                },
                "resource": resources,
            }
        ],
    }
