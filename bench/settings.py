"""Settings for the benchmarks: the test settings plus the peers Patterm is measured against.

django-auditlog (requirements-bench.txt) is installed here only; the product never loads it.
"""

from patterm.settings.test import *  # noqa: F403
from patterm.settings.test import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "auditlog"]

# django-fernet-encrypted-fields derives its Fernet key from SECRET_KEY and this salt.
SALT_KEY = "patterm-bench-salt-not-a-secret"

# The HTTP figures run gunicorn with these settings on loopback.
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
DEBUG = False
