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

import binascii
import datetime
import os
from functools import cached_property

from cryptography.exceptions import InvalidTag
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


_keys_module = None


def _keys():
    """vault.keys, imported on first use (it imports the models, which import this module);
    once, not once per value sealed or opened."""
    global _keys_module
    if _keys_module is None:
        from vault import keys

        _keys_module = keys
    return _keys_module


_NONCE_SIZE = crypto.NONCE_SIZE
_urandom = os.urandom
_b2a_base64 = binascii.b2a_base64
_a2b_base64 = binascii.a2b_base64
# `pt1$<key id>$` per data key id: formatted once, not once per value sealed. Bounded: a
# process that sealed under many keys (a patient key rotation job) starts it over.
_envelope_prefixes: dict[int, str] = {}


def _envelope_prefix(key_id: int) -> str:
    prefix = _envelope_prefixes.get(key_id)
    if prefix is None:
        if len(_envelope_prefixes) >= 10_000:
            _envelope_prefixes.clear()
        prefix = _envelope_prefixes[key_id] = f"{ENVELOPE_VERSION}${key_id}$"
    return prefix


_SHORTEST_SEALED = crypto.NONCE_SIZE + crypto.TAG_SIZE


def associated_data(*, table: str, column: str, patient_id, row_id) -> bytes:
    """What a value is bound to. The fields build the same bytes from parts made once
    (`EncryptedTextField._context`); these bytes are the stored format: never change them."""
    return f"{ENVELOPE_VERSION}|{table}|{column}|patient={patient_id}|row={row_id}".encode()


class _NotAnEnvelope(crypto.DecryptionError):
    """The stored text is no Patterm envelope at all."""


class EncryptedAttribute(DeferredAttribute):
    """The descriptor that shows plaintext and keeps the sealed value for saving."""

    def __get__(self, instance, cls=None):
        if instance is None:
            return self
        values, field = instance.__dict__, self.field
        attname = field.attname
        # A deferred value is loaded by DeferredAttribute.
        value = values[attname] if attname in values else super().__get__(instance, cls)
        if type(value) is not Sealed:
            return value
        plaintexts = values.get("_patterm_plaintext")
        if plaintexts is None:
            plaintexts = values["_patterm_plaintext"] = {}
        elif attname in plaintexts:
            return plaintexts[attname]
        plaintext = plaintexts[attname] = _opened(field, instance, values, value)
        return plaintext

    def __set__(self, instance, value):
        values = instance.__dict__
        values[self.field.attname] = value
        if plaintexts := values.get("_patterm_plaintext"):
            plaintexts.pop(self.field.attname, None)


def _opened(field, instance, values: dict, envelope: "Sealed"):
    """`field.unseal(instance, envelope)`, its common case written out: once per value shown,
    the five calls of `unseal`, `_context`, `unseal_for` and `keys.cipher` around the AES call
    were about a third of a value's time (bench/writes.py, decision 0019, fourth round).

    The common case: the instance still holds the very patient and primary key objects its
    row context was made for (or has none yet), the envelope parses, and the data key's cipher
    is in the request cache. The bytes it authenticates are the same (`associated_data()`);
    anything else (no request cache, a key to load, an erased patient, a value that does not
    open) goes through `unseal`, which raises or answers as it always did.
    """
    patient_attname = field._patient_attname
    patient_id = values.get(patient_attname)
    row_id = values.get(field._pk_attname)
    row = values.get("_patterm_row_context")
    if row is None or row[0] is not patient_id or row[1] is not row_id:
        if patient_id is None or row_id is None:
            return field.unseal(instance, envelope)
        row = (patient_id, row_id, f"|patient={patient_id}|row={row_id}".encode())
        values["_patterm_row_context"] = row
    try:
        version, key_text, payload = envelope.split("$")
        sealed = _a2b_base64(payload, strict_mode=True)
        key_id = int(key_text)
    except (ValueError, binascii.Error):
        return field.unseal(instance, envelope)
    cache = (_keys_module or _keys()).request_key_cache_of_block()
    aead = None if cache is None else cache.get(("cipher", key_id, patient_id))
    if aead is None or version != ENVELOPE_VERSION or len(sealed) < _SHORTEST_SEALED:
        return field.unseal(instance, envelope)
    try:
        plaintext = aead.decrypt(
            sealed[:_NONCE_SIZE], sealed[_NONCE_SIZE:], field._context_prefix + row[2]
        ).decode()
    except InvalidTag:
        return field.unseal(instance, envelope)  # raises, with the field and the row named
    return field.value_from_plaintext(plaintext) if field._converts_plaintext else plaintext


def _from_db_sealed(cls, db, field_names, values):
    """`Model.from_db`, then every encrypted value loaded marked as `Sealed`.

    Installed on each model with an encrypted field instead of a `from_db_value` converter:
    with a converter, Django copies every row into a list and calls it once per value, which
    cost a 50-entry record page 4 % of reading the same entries in plain columns
    (bench/record_read.py). `values()` and `values_list()` return the stored text as `str`.
    """
    instance = models.Model.from_db.__func__(cls, db, field_names, values)
    stored = instance.__dict__
    attnames = cls.__dict__.get("_patterm_encrypted_attnames")
    if attnames is None:
        attnames = tuple(
            field.attname
            for field in cls._meta.concrete_fields
            if isinstance(field, EncryptedTextField)
        )
        cls._patterm_encrypted_attnames = attnames
    for attname in attnames:
        value = stored.get(attname)
        if type(value) is str:  # None stays None; a deferred value is not there yet
            stored[attname] = Sealed(value)
    return instance


class EncryptedTextField(models.TextField):
    descriptor_class = EncryptedAttribute

    def __init__(self, *args, patient_field: str, **kwargs):
        self.patient_field = patient_field
        super().__init__(*args, **kwargs)

    def contribute_to_class(self, cls, name, private_only=False):
        super().contribute_to_class(cls, name, private_only=private_only)
        if cls._meta.abstract:
            return
        loader = getattr(cls.from_db, "__func__", None)
        if loader is not _from_db_sealed:
            if loader is not models.Model.from_db.__func__:
                raise ImproperlyConfigured(
                    f"{cls.__name__} has its own from_db; encrypted fields need theirs"
                )
            cls.from_db = classmethod(_from_db_sealed)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["patient_field"] = self.patient_field
        return name, path, args, kwargs

    # Conversions between the Python value and the text that is encrypted.
    def plaintext_from_value(self, value) -> str:
        return str(value)

    def value_from_plaintext(self, text: str):
        return text

    @cached_property
    def _patient_attname(self) -> str:
        return self.model._meta.get_field(self.patient_field).attname

    @cached_property
    def _pk_attname(self) -> str:
        return self.model._meta.pk.attname

    @cached_property
    def _converts_plaintext(self) -> bool:
        """Whether the read text needs `value_from_plaintext` (not for plain text fields)."""
        return type(self).value_from_plaintext is not EncryptedTextField.value_from_plaintext

    @cached_property
    def _converts_value(self) -> bool:
        """Whether the value needs `plaintext_from_value` to become text (not for text)."""
        return type(self).plaintext_from_value is not EncryptedTextField.plaintext_from_value

    @cached_property
    def _context_prefix(self) -> bytes:
        """The start of `associated_data()` that is the same for every row: `pt1|table|column`."""
        return f"{ENVELOPE_VERSION}|{self.model._meta.db_table}|{self.column}".encode()

    def _context(self, instance) -> tuple[int, bytes]:
        """(patient id, associated data): byte for byte `associated_data()`, but the row's part
        (`|patient=...|row=...`) is formatted once per instance for all its encrypted fields."""
        attname, values = self._patient_attname, instance.__dict__
        patient_id = values[attname] if attname in values else getattr(instance, attname)
        row_id = values.get(self._pk_attname)  # the primary key is never deferred
        # The row's part as formatted for the very objects the instance holds now (identity,
        # not equality: comparing UUIDs runs Python code; a changed or equal-but-new value
        # just formats the part again).
        row = values.get("_patterm_row_context")
        if row is None or row[0] is not patient_id or row[1] is not row_id:
            if patient_id is None or row_id is None:
                raise ImproperlyConfigured(
                    f"{self.model.__name__}.{self.name} needs the patient and the primary key "
                    "before it can be encrypted"
                )
            row = (patient_id, row_id, f"|patient={patient_id}|row={row_id}".encode())
            values["_patterm_row_context"] = row
        return patient_id, self._context_prefix + row[2]

    def row_context(self, patient_id, row_id) -> bytes:
        """The associated data of this column in row `row_id` of patient `patient_id`."""
        return self._context_prefix + f"|patient={patient_id}|row={row_id}".encode()

    def seal(self, instance, value) -> Sealed:
        patient_id, context = self._context(instance)
        return self.seal_for(patient_id, context, value)

    def seal_for(self, patient_id, context: bytes, value) -> Sealed:
        """`value` sealed under the patient's current data key, bound to `context`."""
        key_id, aead = _keys().current_cipher(patient_id)
        nonce = _urandom(_NONCE_SIZE)
        sealed = nonce + aead.encrypt(nonce, self._plaintext(value).encode(), context)
        return Sealed(_envelope_prefix(key_id) + _b2a_base64(sealed, newline=False).decode())

    def _plaintext(self, value) -> str:
        if self._converts_value:
            return self.plaintext_from_value(value)
        return value if type(value) is str else str(value)

    def unseal(self, instance, envelope: Sealed):
        patient_id, context = self._context(instance)
        try:
            return self.unseal_for(patient_id, context, envelope)
        except crypto.DecryptionError as error:
            if isinstance(error, _NotAnEnvelope):
                raise
            raise crypto.DecryptionError(
                f"{self.model.__name__}.{self.name} (row {instance.pk}) cannot be decrypted: "
                f"{error}"
            ) from error

    def unseal_for(self, patient_id, context: bytes, envelope: str):
        """The value of `envelope`, bound to `context`; `ERASED` when its key was destroyed."""
        try:
            version, key_text, payload = envelope.split("$")
            if version != ENVELOPE_VERSION:
                raise ValueError(version)
            key_id = int(key_text)
            sealed = binascii.a2b_base64(payload, strict_mode=True)
        except (ValueError, binascii.Error):
            raise _NotAnEnvelope(
                f"{self.model.__name__}.{self.name}: not a Patterm envelope"
            ) from None
        try:
            aead = _keys().cipher(key_id, patient_id)
        except crypto.KeyDestroyed:
            return ERASED
        # `crypto.open_with`, written out: once per value shown, the call was a tenth of it.
        if len(sealed) < _SHORTEST_SEALED:
            raise crypto.DecryptionError("sealed value is too short")
        try:
            plaintext = aead.decrypt(sealed[:_NONCE_SIZE], sealed[_NONCE_SIZE:], context).decode()
        except InvalidTag as error:
            raise crypto.DecryptionError(
                "authentication failed: wrong key, wrong context, or the value was altered"
            ) from error
        return self.value_from_plaintext(plaintext) if self._converts_plaintext else plaintext

    def pre_save(self, model_instance, add):
        values = model_instance.__dict__
        value = values.get(self.attname)
        if value is None or isinstance(value, Sealed):
            return value
        # `seal_for` and `_context` written out, their common case inline: once per value
        # saved, the calls around the AES call were more than half of the field's own time in
        # a bulk save (bench/writes.py; decision 0019, third round).
        row = values.get("_patterm_row_context")
        patient_attname = self._patient_attname
        if (
            row is not None
            and patient_attname in values
            and row[0] is values[patient_attname]
            and row[1] is values.get(self._pk_attname)
        ):
            patient_id, context = row[0], self._context_prefix + row[2]
        else:
            patient_id, context = self._context(model_instance)
        key_id, aead = (_keys_module or _keys()).current_cipher(patient_id)
        if self._converts_value:
            text = self.plaintext_from_value(value)
        else:
            text = value if type(value) is str else str(value)
        nonce = _urandom(_NONCE_SIZE)
        sealed = nonce + aead.encrypt(nonce, text.encode(), context)
        prefix = _envelope_prefixes.get(key_id) or _envelope_prefix(key_id)
        sealed = Sealed(prefix + _b2a_base64(sealed, newline=False).decode())
        values[self.attname] = sealed
        plaintexts = values.get("_patterm_plaintext")
        if plaintexts is None:
            plaintexts = values["_patterm_plaintext"] = {}
        plaintexts[self.attname] = value
        return sealed

    def get_db_prep_save(self, value, connection):
        # What a save sends: the sealed text, without `Field`'s `as_sql` probe and the two
        # calls below it (`get_prep_value` refuses the rest, as before).
        if type(value) is Sealed:
            return str(value)
        return super().get_db_prep_save(value, connection)

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
