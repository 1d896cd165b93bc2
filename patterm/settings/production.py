"""Production settings: the base values, hardened, and a refusal to start without secrets.

Each secret must come from the environment; none is generated here. A missing one stops start-up
with a message that names it (SECURITY.md D3).
"""

import os

from django.core.exceptions import ImproperlyConfigured

REQUIRED_SETTINGS = (
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "PATTERM_MASTER_KEYS",
    "PATTERM_AUDIT_PSEUDONYM_KEY",
    "PATTERM_AUDIT_SIGNING_KEY",
)


def missing_settings(environ=os.environ) -> list[str]:
    return [name for name in REQUIRED_SETTINGS if not environ.get(name, "").strip()]


if missing := missing_settings():
    raise ImproperlyConfigured(
        "Patterm refuses to start in production without: " + ", ".join(missing)
    )

os.environ.setdefault("DEBUG", "False")

from .base import *  # noqa: E402, F403
from .base import env  # noqa: E402

DEBUG = False

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = 31_536_000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# `__Host-` cookies: only ever set over HTTPS, for this exact host, path /; no subdomain can
# plant or overwrite them.
SESSION_COOKIE_NAME = "__Host-sessionid"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_NAME = "__Host-csrftoken"
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_NAME = "__Host-language"
LANGUAGE_COOKIE_SECURE = True
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"

# Staff reach medical data and the audit log only with a confirmed second factor.
PATTERM_REQUIRE_STAFF_OTP = env.bool("PATTERM_REQUIRE_STAFF_OTP", default=True)
