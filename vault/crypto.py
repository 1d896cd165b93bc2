"""The AEAD layer: AES-256-GCM with a fresh random 96-bit nonce per message.

Everything Patterm encrypts goes through `seal` and `open_sealed`, or `seal_with` and
`open_with` when one key opens many values (the AESGCM object, which expands the key once, is
then made once per key instead of once per value). A sealed message is
nonce (12 bytes) || ciphertext || tag (16 bytes). Only 96-bit nonces are accepted: they are the
size GCM is specified for, and random 96-bit nonces under one key stay safe far beyond the
number of values one patient key will ever encrypt (NIST SP 800-38D, 2^32 messages).
"""

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


class DecryptionError(Exception):
    """A value that cannot be opened: wrong key, moved elsewhere, or tampered with."""


class KeyDestroyed(DecryptionError):
    """The key was destroyed on purpose (erasure): the value is gone, not broken."""


def generate_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_SIZE * 8)


def seal_with_nonce(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt under an explicit nonce. Only the test vectors call this; use `seal`."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def cipher(key: bytes) -> AESGCM:
    """The AES-GCM object of `key`, for `seal_with` and `open_with`."""
    return AESGCM(key)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    return seal_with(AESGCM(key), plaintext, associated_data)


def seal_with(aead: AESGCM, plaintext: bytes, associated_data: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + aead.encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    return open_with(AESGCM(key), sealed, associated_data)


def open_with(aead: AESGCM, sealed: bytes, associated_data: bytes) -> bytes:
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise DecryptionError("sealed value is too short")
    try:
        return aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], associated_data)
    except InvalidTag as error:
        raise DecryptionError(
            "authentication failed: wrong key, wrong context, or the value was altered"
        ) from error
