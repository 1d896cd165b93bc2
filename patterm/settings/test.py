"""Settings for the test suite (pytest-django)."""

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR, env

# Fast hashing keeps the suite quick; tests of hashing itself override PASSWORD_HASHERS with
# the production list (accounts/tests/test_passwords.py), as cookiecutter-django does.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# The appointment e-mails go out when a test runs the sender (`sent_mails` in conftest.py), on
# both databases alike; the inline send of SQLite has its own test (booking/tests/test_outbox.py).
PATTERM_MAIL_SEND_INLINE = False

# Checkpoints by the clock would depend on test order; tests of checkpoints set what they need.
PATTERM_AUDIT_CHECKPOINT_MINUTES = 0

# Two suites running at once (two terminals, CI beside a developer) must not share a test
# database: PATTERM_TEST_DB_SUFFIX gives each its own.
_suffix = env.str("PATTERM_TEST_DB_SUFFIX", default="")

# SQLite tests use a real file, never the in-memory database: concurrency tests need separate
# connections that lock the way production does.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-patterm{_suffix}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}{_suffix}"}

# Demo and test staff reach medical data without a second factor unless a test asks for it
# (accounts/tests/test_otp.py turns PATTERM_REQUIRE_STAFF_OTP on).
PATTERM_REQUIRE_STAFF_OTP = False
