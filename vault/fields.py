"""Model fields that encrypt on save and decrypt on read, with the patient's data key.

A stored value is a self-describing envelope, `pt1$<data key id>$<base64 of nonce, ciphertext
and tag>`: the format version says how to read it, the key id which patient key opens it. The
associated data binds it to its table, column, patient and row, so a value copied anywhere else
refuses to decrypt instead of showing another record's content.

On the model instance the attribute is the plaintext; once the patient's data key was destroyed
(erasure), it is `ERASED`. Values loaded from the database stay
sealed until first read, and are written back unchanged when untouched. Encrypted columns can
be neither filtered on nor bulk-updated: the ORM would send plaintext to the database, so
`get_prep_value` refuses anything that is not already sealed, and `get_lookup` refuses the
lookups (`contains`, `iexact`, `regex`, ...) that would bypass it.
"""

import base64
import binascii
import datetime

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from vault import crypto

ENVELOPE_VERSION = "pt1"


class Sealed(str):
    """An envelope as it is stored: the database's value, not the plaintext."""


class Erased(str):
    """What every encrypted value of an erased patient reads as: gone, clearly, not broken."""


ERASED = Erased("[erased]")


def is_erased(value) -> bool:
    return isinstance(value, Erased)


def associated_data(*, table: str, column: str, patient_id, row_id) -> bytes:
    return f"{ENVELOPE_VERSION}|{table}|{column}|patient={patient_id}|row={row_id}".encode()


class EncryptedAttribute(DeferredAttribute):
    """The descriptor that shows plaintext and keeps the sealed value for saving."""

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        value = super().__get__(instance, cls)  # loads a deferred value when needed
        if not isinstance(value, Sealed):
            return value
        cache = instance.__dict__.setdefault("_patterm_plaintext", {})
        if self.field.attname not in cache:
            cache[self.field.attname] = self.field.unseal(instance, value)
        return cache[self.field.attname]

    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = value
        instance.__dict__.get("_patterm_plaintext", {}).pop(self.field.attname, None)


class EncryptedTextField(models.TextField):
    descriptor_class = EncryptedAttribute

    def __init__(self, *args, patient_field: str, **kwargs):
        self.patient_field = patient_field
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["patient_field"] = self.patient_field
        return name, path, args, kwargs

    # Conversions between the Python value and the text that is encrypted.
    def plaintext_from_value(self, value) -> str:
        return str(value)

    def value_from_plaintext(self, text: str):
        return text

    def _context(self, instance) -> tuple[int, bytes]:
        patient_id = getattr(instance, self.model._meta.get_field(self.patient_field).attname)
        if patient_id is None or instance.pk is None:
            raise ImproperlyConfigured(
                f"{self.model.__name__}.{self.name} needs the patient and the primary key "
                "before it can be encrypted"
            )
        return patient_id, associated_data(
            table=self.model._meta.db_table,
            column=self.column,
            patient_id=patient_id,
            row_id=instance.pk,
        )

    def seal(self, instance, value) -> Sealed:
        from vault import keys

        patient_id, context = self._context(instance)
        key_id, key = keys.current_data_key(patient_id)
        plaintext = self.plaintext_from_value(value).encode()
        sealed = crypto.seal(key, plaintext, context)
        return Sealed(f"{ENVELOPE_VERSION}${key_id}${base64.b64encode(sealed).decode()}")

    def unseal(self, instance, envelope: Sealed):
        from vault import keys

        version, _, rest = envelope.partition("$")
        key_text, _, payload = rest.partition("$")
        try:
            if version != ENVELOPE_VERSION:
                raise ValueError(version)
            key_id, sealed = int(key_text), base64.b64decode(payload, validate=True)
        except (ValueError, binascii.Error):
            raise crypto.DecryptionError(
                f"{self.model.__name__}.{self.name}: not a Patterm envelope"
            ) from None
        patient_id, context = self._context(instance)
        try:
            plaintext = crypto.open_sealed(keys.data_key(key_id, patient_id), sealed, context)
        except crypto.KeyDestroyed:
            return ERASED
        except crypto.DecryptionError as error:
            raise crypto.DecryptionError(
                f"{self.model.__name__}.{self.name} (row {instance.pk}) cannot be decrypted: "
                f"{error}"
            ) from error
        return self.value_from_plaintext(plaintext.decode())

    def pre_save(self, model_instance, add):
        value = model_instance.__dict__.get(self.attname)
        if value is None or isinstance(value, Sealed):
            return value
        sealed = self.seal(model_instance, value)
        model_instance.__dict__[self.attname] = sealed
        model_instance.__dict__.setdefault("_patterm_plaintext", {})[self.attname] = value
        return sealed

    def from_db_value(self, value, expression, connection):
        return None if value is None else Sealed(value)

    def to_python(self, value):
        return value

    def get_prep_value(self, value):
        if value is None or isinstance(value, Sealed):
            return None if value is None else str(value)
        raise self._refused()

    def get_lookup(self, lookup_name):
        # Lookups such as `iexact`, `contains` or `regex` never call get_prep_value and would
        # send the plaintext to the database (and quietly match nothing): refuse them here.
        lookup = super().get_lookup(lookup_name)
        if lookup is not None and not lookup.prepare_rhs and lookup_name != "isnull":
            raise self._refused()
        return lookup

    def _refused(self) -> TypeError:
        return TypeError(
            f"{self.model.__name__}.{self.name} is encrypted: it cannot be filtered on or "
            "updated in bulk, only saved through a model instance"
        )


class EncryptedDateField(EncryptedTextField):
    """A date, encrypted as its ISO text (YYYY-MM-DD)."""

    def plaintext_from_value(self, value) -> str:
        if not isinstance(value, datetime.date):
            raise TypeError(f"{self.model.__name__}.{self.name} takes a date, not {value!r}")
        return value.isoformat()

    def value_from_plaintext(self, text: str):
        return datetime.date.fromisoformat(text)
