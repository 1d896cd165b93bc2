"""Every management command of Patterm explains itself and each of its options in --help, and
docs/operations.md lists every one of them."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import get_commands, load_command_class

OURS = {"accounts", "audit", "booking", "consent", "patterm", "vault"}
COMMANDS = sorted(name for name, app in get_commands().items() if app in OURS)
# Options every Django command has, explained by Django itself.
DJANGO_OPTIONS = {
    "help",
    "version",
    "verbosity",
    "settings",
    "pythonpath",
    "traceback",
    "no_color",
    "force_color",
    "skip_checks",
}


def test_the_commands_are_found():
    assert {"generate_slots", "verify_audit", "seed_demo", "erase_patient"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_explains_the_command_and_every_option(name):
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)

    assert len(command.help) > 40
    for action in parser._actions:
        if action.dest in DJANGO_OPTIONS:
            continue
        assert action.help and len(action.help) > 10, f"{name}: {action.dest} has no help"


@pytest.mark.parametrize("name", COMMANDS)
def test_operations_md_lists_the_command(name):
    operations = (Path(settings.BASE_DIR) / "docs" / "operations.md").read_text()

    assert f"`{name}" in operations or f"manage.py {name}" in operations
