from django.apps import AppConfig


class PattermConfig(AppConfig):
    """The top layer: the assembled API, the home page, base templates and demo data."""

    name = "patterm"
    verbose_name = "Patterm"
