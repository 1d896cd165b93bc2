"""The patient's export as a FHIR Bundle, built and validated with `fhir.resources`.

`fhir.resources` 8 ships R5, R4B and STU3; R4B (4.3.0) is the published revision of R4 that it
carries, and the resources used here are the same in R4 and R4B. Every resource is built through
the library's models, which validate types, cardinalities and codes as they are constructed.
"""

import base64
import uuid

from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from vault.fields import is_erased

AUDIT_OUTCOME = {"success": "0", "failure": "4", "denied": "4"}


def _entry_resource(entry, patient_ref: dict):
    title, body = str(entry["title"]), str(entry["body"])
    recorded = entry["created_at"].isoformat()
    note = [{"text": body}]
    category = entry["category"]
    if category == "diagnosis":
        return Condition(
            id=str(entry["id"]),
            subject=patient_ref,
            code={"text": title},
            note=note,
            recordedDate=recorded,
        )
    if category == "medication":
        return MedicationStatement(
            id=str(entry["id"]),
            status="recorded",
            subject=patient_ref,
            medicationCodeableConcept={"text": title},
            note=note,
            dateAsserted=recorded,
        )
    if category == "allergy":
        return AllergyIntolerance(
            id=str(entry["id"]),
            patient=patient_ref,
            code={"text": title},
            note=note,
            recordedDate=recorded,
        )
    if category == "lab_result":
        return Observation(
            id=str(entry["id"]),
            status="final",
            subject=patient_ref,
            code={"text": title},
            valueString=body,
            issued=recorded,
        )
    return DocumentReference(  # notes and documents
        id=str(entry["id"]),
        status="current",
        subject=patient_ref,
        description=title,
        date=recorded,
        content=[
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "title": title,
                    "data": base64.b64encode(body.encode()).decode(),
                }
            }
        ],
    )


def _full_url(resource) -> str:
    """A stable URN for each resource of the bundle (the export has no FHIR server behind it)."""
    name = f"patterm:{resource.get_resource_type()}/{resource.id}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def export_bundle(export: dict) -> dict:
    """A `collection` Bundle of the JSON export (vault/api.py): Patient, Appointments, record
    entries by category, Consents and the access log as AuditEvents."""
    profile = export["profile"]
    patient_id = f"patient-{profile['id']}"
    patient_ref = {"reference": f"Patient/{patient_id}"}
    patient = {"id": patient_id}
    if profile["email"]:  # a relative without login has none (decision 0014)
        patient["telecom"] = [{"system": "email", "value": profile["email"]}]
    if not is_erased(profile["first_name"]):
        patient["name"] = [{"family": profile["last_name"], "given": [profile["first_name"]]}]
    if hasattr(profile["date_of_birth"], "isoformat"):
        patient["birthDate"] = profile["date_of_birth"].isoformat()
    resources = [Patient(**patient)]
    for item in export["appointments"]:
        slot = item["slot"]
        resources.append(
            Appointment(
                id=str(item["id"]),
                status="cancelled" if item["status"] == "cancelled" else "booked",
                start=slot.starts_at.isoformat(),
                end=slot.ends_at.isoformat(),
                description=f"{slot.clinic.name}, {slot.clinic.address}",
                participant=[{"actor": patient_ref, "status": "accepted"}],
            )
        )
    resources += [_entry_resource(entry, patient_ref) for entry in export["entries"]]
    for consent in export["consents"]:
        provision = {
            "type": "permit",
            "purpose": [
                {"code": "TREAT", "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason"}
            ],
        }
        if consent["valid_until"]:
            provision["period"] = {"end": consent["valid_until"].isoformat()}
        resources.append(
            Consent(
                id=str(consent["id"]),
                status="active" if consent["status"] == "active" else "inactive",
                scope={
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                            "code": "patient-privacy",
                        }
                    ]
                },
                category=[{"text": ", ".join(consent["categories"])}],
                patient=patient_ref,
                dateTime=consent["granted_at"].isoformat(),
                organization=[{"display": consent["grantee_clinic"]["name"]}],
                provision=provision,
            )
        )
    for number, row in enumerate(export["access_log"], 1):
        clinic = row["actor"]["clinic"]
        resources.append(
            AuditEvent(
                id=f"access-{number}",
                type={"system": "https://patterm.example/audit-action", "code": row["action"]},
                recorded=row["at"].isoformat(),
                outcome=AUDIT_OUTCOME.get(row["outcome"], "4"),
                purposeOfEvent=[{"text": row["purpose"]}] if row["purpose"] else None,
                agent=[
                    {
                        "requestor": True,
                        "role": [{"text": row["actor"]["role"] or "system"}],
                        "who": {"display": clinic["name"]} if clinic else None,
                    }
                ],
                source={"observer": {"display": "Patterm"}},
                entity=[{"what": patient_ref, "description": f"basis: {row['basis'] or '-'}"}],
            )
        )
    bundle = Bundle(
        type="collection",
        timestamp=export["exported_at"].isoformat(),
        entry=[{"fullUrl": _full_url(resource), "resource": resource} for resource in resources],
    )
    return bundle.model_dump(mode="json", exclude_none=True)
