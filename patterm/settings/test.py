"""Settings for the test suite (pytest-django)."""

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR

# Fast hashing keeps the suite quick; tests of hashing itself override PASSWORD_HASHERS with
# the production list (accounts/tests/test_passwords.py), as cookiecutter-django does.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# SQLite tests use a real file, never the in-memory database: concurrency tests need separate
# connections that lock the way production does.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-patterm.sqlite3")}
