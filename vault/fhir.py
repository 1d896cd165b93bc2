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
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot

from vault import coding
from vault.fields import is_erased

FHIR_JSON = "application/fhir+json"

# AuditEvent codings (R4: http://hl7.org/fhir/R4/auditevent.html). Every Patterm event is a REST
# interaction of the portal or API; its action code says whether data was read, created,
# updated or deleted, and its outcome is 0 (success) or 4 (minor failure: refused).
AUDIT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
AUDIT_SUBTYPE_SYSTEM = "https://patterm.de/fhir/CodeSystem/audit-action"
AUDIT_OUTCOME = {"success": "0", "failure": "4", "denied": "4"}


def audit_action_code(action: str) -> str:
    """C, R, U, D or E (execute) for a Patterm audit action such as `record.read`."""
    verb = action.rsplit(".", 1)[-1]
    if verb in {"read", "export", "view", "list"}:
        return "R"
    if verb in {"write", "create", "book", "grant", "declare", "add", "register", "signup"}:
        return "C"
    if verb in {"revoke", "cancel", "update", "change", "rotate", "confirm"}:
        return "U"
    if verb in {"erase", "delete", "remove", "destroy"}:
        return "D"
    return "E"


def full_url(resource_type: str, key) -> str:
    """A stable urn:uuid for each resource of the bundle: references point to it, so that they
    resolve inside the Bundle by FHIR's rules (the export has no FHIR server behind it)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'patterm:{resource_type}/{key}')}"


def _ref(resource_type: str, key, display: str | None = None) -> dict:
    reference = {"reference": full_url(resource_type, key)}
    if display:
        reference["display"] = display
    return reference


def _concept(entry: dict, title: str) -> dict:
    """The entry's text, with the practitioner's code in its system where they gave one."""
    concept = {"text": title}
    code = entry.get("code")
    if code and not is_erased(code):
        system = coding.code_system(entry["category"], str(code))
        if system is not None:
            concept["coding"] = [{"system": system.url, "code": str(code)}]
    return concept


def _entry_resource(entry, links):
    """The FHIR resource of one record entry (a dict of `vault.api.record_entry_out`); `links`
    makes its references (`_Directory` for the export, `RestLinks` for the read API)."""
    title, body = str(entry["title"]), str(entry["body"])
    concept = _concept(entry, title)
    recorded = entry["created_at"].isoformat()
    note = [{"text": body}]
    category = entry["category"]
    patient_ref = links.patient(entry["patient_id"])
    author = links.practitioner(entry["author"]["id"], entry["author"]["name"])
    clinic = links.organization(entry["clinic"]["id"], entry["clinic"]["name"])
    if category == "diagnosis":
        return Condition(
            id=str(entry["id"]),
            category=[CONDITION_CATEGORY],
            subject=patient_ref,
            code=concept,
            note=note,
            recordedDate=recorded,
            recorder=author,
        )
    if category == "medication":
        return MedicationStatement(
            id=str(entry["id"]),
            status="active",  # R4 has no "recorded" (an R5 code)
            subject=patient_ref,
            medicationCodeableConcept=concept,
            note=note,
            dateAsserted=recorded,
            informationSource=author,
        )
    if category == "allergy":
        return AllergyIntolerance(
            id=str(entry["id"]),
            patient=patient_ref,
            code=concept,
            note=note,
            recordedDate=recorded,
            recorder=author,
        )
    if category == "lab_result":
        return Observation(
            id=str(entry["id"]),
            status="final",
            category=[OBSERVATION_CATEGORY],
            subject=patient_ref,
            code=concept,
            valueString=body,
            effectiveDateTime=recorded,
            issued=recorded,
            performer=[author, clinic],
        )
    return DocumentReference(  # notes and documents
        id=str(entry["id"]),
        status="current",
        subject=patient_ref,
        description=title,
        date=recorded,
        author=[author],
        custodian=clinic,
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


# The category each entry type carries, so that `category` searches find them (R4 codes).
CONDITION_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
            "code": "encounter-diagnosis",
        }
    ]
}
OBSERVATION_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}


def organization_resource(name: str, *, resource_id: str) -> Organization:
    """A clinic as an Organization: its name only (what the portal's clinic directory shows)."""
    return Organization(id=resource_id, name=name, active=True)


def location_resource(clinic, *, resource_id: str, links) -> Location:
    """A clinic's premises as a Location: name and the address the public search shows."""
    return Location(
        id=resource_id,
        status="active",
        name=clinic.name,
        address={"text": clinic.address, "city": clinic.city, "country": "DE"},
        managingOrganization=links.organization(clinic.pk, clinic.name),
    )


def practitioner_resource(name: str, *, resource_id: str, active: bool = True) -> Practitioner:
    """A practitioner: the name the portal's practitioner page shows, nothing else (no e-mail,
    phone or address: decision 0020)."""
    practitioner = {"id": resource_id, "active": active}
    if name:
        practitioner["name"] = [{"text": name}]
    return Practitioner(**practitioner)


class _Directory:
    """The export's references: urn:uuid fullUrls, and the Practitioners, Organizations and
    Locations they point to, each added once."""

    def __init__(self):
        self.resources: dict[tuple[str, object], object] = {}

    def patient(self, patient_id: int) -> dict:
        return _ref("Patient", patient_id)

    def organization(self, clinic_id: int, name: str) -> dict:
        key = ("Organization", clinic_id)
        if key not in self.resources:
            self.resources[key] = organization_resource(name, resource_id=f"clinic-{clinic_id}")
        return _ref("Organization", clinic_id, name)

    def location(self, clinic) -> dict:
        key = ("Location", clinic.pk)
        if key not in self.resources:
            self.resources[key] = location_resource(
                clinic, resource_id=f"location-{clinic.pk}", links=self
            )
        return _ref("Location", clinic.pk, clinic.name)

    def practitioner(self, user_id: int, name: str) -> dict:
        key = ("Practitioner", user_id)
        if key not in self.resources:
            self.resources[key] = practitioner_resource(name, resource_id=f"practitioner-{user_id}")
        return _ref("Practitioner", user_id, name)


class RestLinks:
    """The read API's references: relative (`Patient/7`), as a FHIR server gives them; each
    resolves on the server (Practitioner, Organization and Location too, decision 0020), and
    keeps its display."""

    def patient(self, patient_id: int) -> dict:
        return {"reference": f"Patient/{patient_id}"}

    def organization(self, clinic_id: int, name: str) -> dict:
        return {"reference": f"Organization/{clinic_id}", "display": name}

    def location(self, clinic) -> dict:
        return {"reference": f"Location/{clinic.pk}", "display": clinic.name}

    def practitioner(self, user_id: int, name: str) -> dict:
        reference = {"reference": f"Practitioner/{user_id}"}
        if name:
            reference["display"] = name
        return reference


def _json(resource) -> dict:
    return resource.model_dump(mode="json", exclude_none=True)


def organization_json(clinic) -> dict:
    """The read API's Organization of a clinic (id: the clinic's)."""
    return _json(organization_resource(clinic.name, resource_id=str(clinic.pk)))


def location_json(clinic) -> dict:
    """The read API's Location of a clinic (id: the clinic's, as its Organization's)."""
    return _json(location_resource(clinic, resource_id=str(clinic.pk), links=RestLinks()))


def practitioner_json(user, *, active: bool) -> dict:
    """The read API's Practitioner of a staff user (id: the user's)."""
    name = f"{user.first_name} {user.last_name}".strip()
    return _json(practitioner_resource(name, resource_id=str(user.pk), active=active))


APPOINTMENT_STATUS = {"booked": "booked", "cancelled": "cancelled", "completed": "fulfilled"}


def _appointment(item: dict, links) -> Appointment:
    slot = item["slot"]
    doctor = slot.practitioner
    name = f"{doctor.first_name} {doctor.last_name}".strip()
    appointment = {
        "id": str(item["id"]),
        "status": APPOINTMENT_STATUS.get(item["status"], "booked"),
        "start": slot.starts_at.isoformat(),
        "end": (item.get("ends_at") or slot.ends_at).isoformat(),
        "created": item["booked_at"].isoformat(),
        "specialty": [{"text": slot.specialty.name}],
        "participant": [
            {"actor": links.patient(item["patient_id"]), "status": "accepted"},
            {"actor": links.practitioner(doctor.pk, name), "status": "accepted"},
            {"actor": links.location(slot.clinic), "status": "accepted"},
        ],
    }
    links.organization(slot.clinic.pk, slot.clinic.name)
    if item.get("reason"):
        appointment["reasonCode"] = [{"text": item["reason"]}]
    return Appointment(**appointment)


def appointment_resource(item: dict) -> dict:
    """One appointment (a dict of `booking.api.appointment_out` with `patient_id`) for the read
    API, as JSON."""
    return _appointment(item, RestLinks()).model_dump(mode="json", exclude_none=True)


def entry_resource(entry: dict) -> dict:
    """One record entry (a dict of `vault.api.record_entry_out` with `patient_id`) for the read
    API, as JSON."""
    return _entry_resource(entry, RestLinks()).model_dump(mode="json", exclude_none=True)


def patient_resource(profile: dict, *, resource_id: str | None = None) -> Patient:
    """The Patient of a profile dict (`vault.api._profile_out`); names and birth date only
    while the data key lives."""
    patient = {"id": resource_id or str(profile["id"])}
    if profile["email"]:  # a relative without login has none (decision 0014)
        patient["telecom"] = [{"system": "email", "value": profile["email"]}]
    if not is_erased(profile["first_name"]) and (profile["first_name"] or profile["last_name"]):
        patient["name"] = [{"family": profile["last_name"], "given": [profile["first_name"]]}]
    if hasattr(profile["date_of_birth"], "isoformat"):
        patient["birthDate"] = profile["date_of_birth"].isoformat()
    return Patient(**patient)


def slot_resource(slot, *, schedule_id: int | None, status: str) -> dict:
    """A booking Slot (`status`: free, busy or busy-tentative) in its practitioner's Schedule."""
    resource = {
        "id": slot.public_id,
        "status": status,
        "start": slot.starts_at.isoformat(),
        "end": slot.ends_at.isoformat(),
        "specialty": [{"text": slot.specialty.name}],
        # Slot.schedule is required; a slot whose practitioner left the clinic keeps a display.
        "schedule": {"reference": f"Schedule/{schedule_id}"}
        if schedule_id is not None
        else {"display": slot.clinic.name},
    }
    return Slot(**resource).model_dump(mode="json", exclude_none=True)


def schedule_resource(membership, *, specialties: list[str]) -> dict:
    """A practitioner's Schedule at one clinic (their practitioner membership)."""
    doctor = membership.user
    name = f"{doctor.first_name} {doctor.last_name}".strip()
    links = RestLinks()
    resource = {
        "id": str(membership.pk),
        "active": True,
        "actor": [
            links.practitioner(doctor.pk, name),
            links.location(membership.clinic),
        ],
    }
    if specialties:
        resource["specialty"] = [{"text": name} for name in specialties]
    return Schedule(**resource).model_dump(mode="json", exclude_none=True)


def _audit_event(number: int, row: dict, patient_ref: dict, directory: _Directory) -> AuditEvent:
    clinic = row["actor"]["clinic"]
    return AuditEvent(
        id=f"access-{number}",
        type=AUDIT_TYPE,
        subtype=[{"system": AUDIT_SUBTYPE_SYSTEM, "code": row["action"]}],
        action=audit_action_code(row["action"]),
        recorded=row["at"].isoformat(),
        outcome=AUDIT_OUTCOME.get(row["outcome"], "4"),
        outcomeDesc=row["outcome"],
        purposeOfEvent=[{"text": row["purpose"]}] if row["purpose"] else None,
        agent=[
            {
                "requestor": True,
                "role": [{"text": row["actor"]["role"] or "system"}],
                "who": directory.organization(clinic["id"], clinic["name"]) if clinic else None,
            }
        ],
        source={"observer": {"display": "Patterm"}},
        entity=[{"what": patient_ref, "description": f"basis: {row['basis'] or '-'}"}],
    )


def export_bundle(export: dict) -> dict:
    """A `collection` Bundle of the JSON export (vault/api.py): Patient, Appointments, record
    entries by category, Consents, the access log as AuditEvents, and the Practitioners,
    Organizations and Locations they point to. Every reference is the urn:uuid fullUrl of a
    resource in the Bundle."""
    profile = export["profile"]
    patient_ref = _ref("Patient", profile["id"])
    directory = _Directory()
    patient = patient_resource(profile, resource_id=f"patient-{profile['id']}")
    resources = [(("Patient", profile["id"]), patient)]
    for item in export["appointments"]:
        item = {**item, "patient_id": profile["id"]}
        resources.append((("Appointment", item["id"]), _appointment(item, directory)))
    for entry in export["entries"]:
        resource = _entry_resource({**entry, "patient_id": profile["id"]}, directory)
        resources.append(((resource.get_resource_type(), entry["id"]), resource))
    for consent in export["consents"]:
        provision = {
            "type": "permit",
            "purpose": [
                {"code": "TREAT", "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason"}
            ],
        }
        if consent["valid_until"]:
            provision["period"] = {"end": consent["valid_until"].isoformat()}
        grantee = consent["grantee_clinic"]
        resources.append(
            (
                ("Consent", consent["id"]),
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
                    organization=[directory.organization(grantee["id"], grantee["name"])],
                    provision=provision,
                ),
            )
        )
    for number, row in enumerate(export["access_log"], 1):
        event = _audit_event(number, row, patient_ref, directory)
        resources.append((("AuditEvent", f"access-{number}"), event))
    resources += list(directory.resources.items())
    bundle = Bundle(
        type="collection",
        timestamp=export["exported_at"].isoformat(),
        entry=[{"fullUrl": full_url(*key), "resource": resource} for key, resource in resources],
    )
    return bundle.model_dump(mode="json", exclude_none=True)
