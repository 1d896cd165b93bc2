"""Settings shared by every environment.

Every value comes from the environment (or a `.env` file in the checkout) with a safe default for
development: DEBUG on, SQLite in the ignored `var/` folder, keys generated there on first use.
`patterm.settings.production` takes the same values and refuses to start without the secrets.
"""

from datetime import timedelta
from pathlib import Path

import environ

from patterm import devsecrets

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
env.read_env(BASE_DIR / ".env")  # values already in the environment win

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="") or devsecrets.text("django-secret-key", VAR_DIR)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "ninja",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    # Patterm, bottom layer first (docs/architecture.md)
    "audit",
    "accounts",
    "consent",
    "vault",
    "booking",
    "patterm",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "audit.middleware.RequestContextMiddleware",
    "vault.middleware.RequestKeyCacheMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.BrowserSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "patterm.middleware.JsonApiErrorsMiddleware",
    "patterm.web.PageErrorsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last: turns a lockout found during authenticate() into the 429 of accounts/lockout.py.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "patterm.urls"
WSGI_APPLICATION = "patterm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "patterm.context_processors.navigation",
                "patterm.staff.emergency_accesses",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite by default (zero set-up); DATABASE_URL=postgres://... selects PostgreSQL (psycopg 3).
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'patterm.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # Many writers at once (booking, audit appends): every transaction takes the write lock at
    # BEGIN (IMMEDIATE), waits up to 20 s for it instead of failing, and WAL lets readers go on
    # while one writer writes. docs/decisions/0001-stack.md explains why.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        ),
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
    # A kept connection that died with a database restart is replaced before it is used.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# --- Accounts and passwords -----------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# AxesStandaloneBackend first: it refuses a locked account before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Argon2id first (Django's defaults: t=2, m=102,400 KiB, p=8, above OWASP's m=19,456 KiB, t=2);
# PBKDF2 stays so that older hashes still verify and are upgraded at the next login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # The bundled list of breached passwords, also behind digits, symbols and l33t spelling.
    {"NAME": "accounts.passwords.BreachedPasswordValidator"},
    # No password that contains the account's own e-mail name or a person's name.
    {"NAME": "accounts.passwords.PersonalDataValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "start"
LOGOUT_REDIRECT_URL = "home"
# Long passphrases are welcome; the cap only keeps one request from hashing megabytes.
PATTERM_PASSWORD_MAX_LENGTH = 1024

# --- API tokens -----------------------------------------------------------------------------
# ASVS L2: an idle timeout and an absolute lifetime; both end the token on the next request.
PATTERM_TOKEN_IDLE_TIMEOUT = timedelta(minutes=env.int("PATTERM_TOKEN_IDLE_MINUTES", default=30))
PATTERM_TOKEN_MAX_AGE = timedelta(hours=env.int("PATTERM_TOKEN_MAX_AGE_HOURS", default=12))
# last_used_at is written at most this often, not on every request.
PATTERM_TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)

# --- Browser sessions -------------------------------------------------------------------------
# Django's database sessions, each registered in accounts.BrowserSession (device, address, last
# seen). The same ASVS L2 limits as tokens: 30 minutes idle, 12 hours at most (ASVS 3.3.2).
SESSION_ENGINE = "django.contrib.sessions.backends.db"
PATTERM_SESSION_IDLE_TIMEOUT = timedelta(
    minutes=env.int("PATTERM_SESSION_IDLE_MINUTES", default=30)
)
PATTERM_SESSION_MAX_AGE = timedelta(hours=env.int("PATTERM_SESSION_MAX_AGE_HOURS", default=12))
SESSION_COOKIE_AGE = int(PATTERM_SESSION_MAX_AGE.total_seconds())
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# The registry's last_seen_at is written at most this often.
PATTERM_SESSION_TOUCH_INTERVAL = timedelta(minutes=1)

# --- Lockout (django-axes) --------------------------------------------------------------------
# Counted per account and per account + address, never per address alone (a clinic's shared
# address must not lock everyone out). The HTML and the API login both go through authenticate().
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", ["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"  # what authenticate() and the login forms call it
AXES_USERNAME_CALLABLE = "accounts.lockout.username_of"
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.address_of"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# Access logs would keep every address and account tried: the audit log has what is needed.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# The database handler counts across every worker; AXES_HANDLER may name the cache handler,
# which then uses CACHE_URL (Redis in production, docs/deployment.md).
AXES_HANDLER = env.str("AXES_HANDLER", default="axes.handlers.database.AxesDatabaseHandler")

# --- Second factor (django-otp, TOTP) -----------------------------------------------------------
# Practitioners, clinic admins and auditors need a confirmed TOTP device before they reach
# medical data or the audit log. Production requires it; development lets the demo staff skip it.
PATTERM_REQUIRE_STAFF_OTP = env.bool("PATTERM_REQUIRE_STAFF_OTP", default=False)
# Paths that a staff member reaches only with a verified second factor (when required): medical
# data, the audit log, and appointments (staff see the booking snapshot: names, birth date,
# reason), the staff pages (schedule, records, audit log) and the Django admin. Patients are
# never gated.
PATTERM_OTP_PROTECTED_PATHS = (
    "/api/medical/",
    "/api/audit/",
    "/api/appointments",
    "/fhir/",
    "/staff/",
    "/admin/",
)
OTP_TOTP_ISSUER = "Patterm"
# A device accepts the codes of the current, previous and next 30 s step (its `tolerance` of 1),
# never older ones; no drift learning, so that window never widens.
OTP_TOTP_SYNC = False
OTP_TOTP_THROTTLE_FACTOR = 1
PATTERM_RECOVERY_CODE_COUNT = 10

# A password-reset link works once (Django's token covers the password hash) and for one hour.
PASSWORD_RESET_TIMEOUT = 3600
# At most this many reset e-mails per address and hour (counted in CACHE_URL).
PATTERM_PASSWORD_RESET_MAX_PER_HOUR = 3

# --- Keys -----------------------------------------------------------------------------------
# Master keys wrap the per-patient data keys: "VERSION:BASE64KEY" entries, newest first.
PATTERM_MASTER_KEYS = env.str("PATTERM_MASTER_KEYS", default="") or devsecrets.master_keys(VAR_DIR)
# Keyed hash that turns a patient id into the pseudonymous subject of audit rows.
PATTERM_AUDIT_PSEUDONYM_KEY = env.str("PATTERM_AUDIT_PSEUDONYM_KEY", default="") or devsecrets.text(
    "audit-pseudonym-key", VAR_DIR
)

# Ed25519 key that signs audit checkpoints (raw 32-byte private key, base64). Keep it outside
# the database; PATTERM_AUDIT_VERIFY_KEYS lists retired public keys (base64, comma-separated)
# whose old checkpoints must still verify.
PATTERM_AUDIT_SIGNING_KEY = env.str(
    "PATTERM_AUDIT_SIGNING_KEY", default=""
) or devsecrets.ed25519_private_key(VAR_DIR)
PATTERM_AUDIT_VERIFY_KEYS = env.list("PATTERM_AUDIT_VERIFY_KEYS", default=[])
# A checkpoint is signed automatically every N events and when the last one is older than M
# minutes (checked at the next event); `manage.py audit_checkpoint` signs one at any time.
PATTERM_AUDIT_CHECKPOINT_EVERY = env.int("PATTERM_AUDIT_CHECKPOINT_EVERY", default=1000)
PATTERM_AUDIT_CHECKPOINT_MINUTES = env.int("PATTERM_AUDIT_CHECKPOINT_MINUTES", default=60)
# The log's name in its signed checkpoints (C2SP origin line and signing key name): one per
# deployment, e.g. "praxis-example.de/audit"; no spaces, no "+".
PATTERM_AUDIT_LOG_ORIGIN = env.str("PATTERM_AUDIT_LOG_ORIGIN", default="patterm.local/audit")
# `manage.py audit_witness` (a second party co-signing checkpoints, decision 0017): its own
# Ed25519 key (raw 32 bytes, base64; or --key-file), its key name, the log verifier keys it
# trusts (name+hash+base64, comma-separated) and, for --url, an auditor's API token.
PATTERM_WITNESS_KEY = env.str("PATTERM_WITNESS_KEY", default="")
PATTERM_WITNESS_NAME = env.str("PATTERM_WITNESS_NAME", default="")
PATTERM_WITNESS_LOG_KEYS = env.list("PATTERM_WITNESS_LOG_KEYS", default=[])
PATTERM_WITNESS_TOKEN = env.str("PATTERM_WITNESS_TOKEN", default="")
# Writers stage events; `manage.py audit_integrate` adds them to the Merkle tree. On SQLite (one
# writer at a time anyway) each transaction integrates its own events right after its commit, so
# `make run` needs no integrator process; on PostgreSQL the integrator runs beside the web server.
PATTERM_AUDIT_INTEGRATE_INLINE = env.bool(
    "PATTERM_AUDIT_INTEGRATE_INLINE",
    default=DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3",
)
# Appointment e-mails are written to an outbox in the booking's transaction and sent after the
# commit by `manage.py send_mails` (decision 0022). On SQLite (development, `make run`) each
# transaction also sends its own mails right after its commit, so a shell or runserver without
# the sender sees them at once; on PostgreSQL only the sender sends.
PATTERM_MAIL_SEND_INLINE = env.bool(
    "PATTERM_MAIL_SEND_INLINE",
    default=DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3",
)
# Days a finished outbox row (sent, superseded, no recipient) is kept before the sender
# deletes it; unfinished rows are never deleted.
PATTERM_MAIL_OUTBOX_KEEP_DAYS = env.int("PATTERM_MAIL_OUTBOX_KEEP_DAYS", default=30)

# --- Content Security Policy (django-csp) -----------------------------------------------------
# No inline script or eval anywhere; nothing may frame the portal.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "de"
LANGUAGES = [("de", "Deutsch"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Berlin")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # collectstatic fills it; WhiteNoise serves it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"

# --- API ------------------------------------------------------------------------------------
NINJA_PAGINATION_PER_PAGE = 50
NINJA_PAGINATION_MAX_LIMIT = 200
# Django refuses bodies above this before any parsing (the API's largest body is small).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)

# --- Booking --------------------------------------------------------------------------------
PATTERM_SLOT_SERIES_MAX_DAYS = 366  # one POST /api/medical/slots creates at most a year of slots
# GET /api/slots counts at most this many matches (patterm/pagination.py explains why).
PATTERM_SEARCH_COUNT_LIMIT = 1000

# --- Reminders and the waitlist ----------------------------------------------------------------
# Hours before an appointment at which `send_reminders` e-mails the patient, for clinics that set
# no hours of their own (Clinic.reminder_hours).
PATTERM_REMINDER_HOURS = [
    int(hours) for hours in env.list("PATTERM_REMINDER_HOURS", default=["48", "2"])
]
# A freed slot is held this long for the waiting patient it is offered to.
PATTERM_WAITLIST_HOLD_MINUTES = env.int("PATTERM_WAITLIST_HOLD_MINUTES", default=30)
# How many waitlist entries (waiting or with an open offer) one patient may have at a time.
PATTERM_WAITLIST_MAX_ENTRIES = env.int("PATTERM_WAITLIST_MAX_ENTRIES", default=10)

# --- Consent ---------------------------------------------------------------------------------
PATTERM_EMERGENCY_ACCESS_DURATION = timedelta(
    hours=env.int("PATTERM_EMERGENCY_ACCESS_HOURS", default=4)
)

# Medical records are kept this many years after the last entry (Germany: BGB section 630f)
# before an erasure request may be completed.
PATTERM_RECORD_RETENTION_YEARS = env.int("PATTERM_RECORD_RETENTION_YEARS", default=10)

# Relatives (decision 0014): from this age a relative may take over their record with an account
# of their own (the German ePA lets its holder manage it alone from 15); the holder is told and
# can invite them. The invitation link works this many days.
PATTERM_RELATIVE_OWN_ACCOUNT_AGE = env.int("PATTERM_RELATIVE_OWN_ACCOUNT_AGE", default=15)
PATTERM_RELATIVE_INVITATION_DAYS = env.int("PATTERM_RELATIVE_INVITATION_DAYS", default=7)
PATTERM_RELATIVES_MAX = 20  # per account holder

# --- Links in e-mails ----------------------------------------------------------------------
PATTERM_PUBLIC_URL = env.str("PATTERM_PUBLIC_URL", default="http://127.0.0.1:8000")

# --- E-mail ---------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Patterm <no-reply@patterm.local>")

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Request bodies never reach the logs; these loggers only name the path and status.
        "django.request": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
        # Axes logs every attempt at INFO; the audit log already has what is needed.
        "axes": {"level": "WARNING"},
    },
}
