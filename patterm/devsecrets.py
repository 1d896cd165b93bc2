"""Development-only secrets, generated once into the ignored `var/` folder.

So that `make run` needs no configuration, a checkout without SECRET_KEY, master keys or the audit
pseudonym key in its environment gets random ones here, on first use, with a warning. The
production settings never call this module: they refuse to start instead.
"""

import base64
import os
import secrets
import sys
from pathlib import Path

DEV_SECRETS_FOLDER = "dev-secrets"


def _read_or_create(var_dir: Path, name: str, generate) -> str:
    folder = var_dir / DEV_SECRETS_FOLDER
    path = folder / name
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    value = generate()
    # O_EXCL: when two processes start at once, one writes and the other reads its value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    print(
        f"WARNING: generated a development secret in {path}. "
        "Never use it in production; set the environment variable instead.",
        file=sys.stderr,
    )
    return value


def text(name: str, var_dir: Path) -> str:
    """A random URL-safe secret of 256 bits, stable across restarts of this checkout."""
    return _read_or_create(var_dir, name, lambda: secrets.token_urlsafe(32))


def master_keys(var_dir: Path) -> str:
    """A PATTERM_MASTER_KEYS value with one random AES-256 master key, version 1."""

    def generate() -> str:
        return "1:" + base64.b64encode(secrets.token_bytes(32)).decode()

    return _read_or_create(var_dir, "master-keys", generate)


def ed25519_private_key(var_dir: Path) -> str:
    """A PATTERM_AUDIT_SIGNING_KEY value: a random Ed25519 private key, raw, base64."""

    def generate() -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        raw = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        return base64.b64encode(raw).decode()

    return _read_or_create(var_dir, "audit-signing-key", generate)
