"""Every German string is translated, and the committed `django.mo` says what `django.po` says.

The catalogue is edited by hand after `make messages`; a forgotten entry or a stale compiled
file would show German users English text without anyone noticing.
"""

import ast
from pathlib import Path

from django.conf import settings
from django.utils import translation

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES" / "django.po"


def parse_po(text):
    """(msgctxt, msgid, msgstr, flags) of each entry; plural forms give msgstr[0]."""
    entries, current, field, flags = [], {}, None, set()
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if not line:
            if current:
                entries.append(
                    (
                        current.get("msgctxt"),
                        current.get("msgid", ""),
                        current.get("msgstr", ""),
                        flags,
                    )
                )
            current, field, flags = {}, None, set()
        elif line.startswith("#,"):
            flags = {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            current[field] += ast.literal_eval(line)
        else:
            keyword, _, value = line.partition(" ")
            field = "msgstr" if keyword.startswith("msgstr[0]") else keyword
            if keyword.startswith("msgstr[") and keyword != "msgstr[0]":
                field = keyword
            current[field] = ast.literal_eval(value)
    return [entry for entry in entries if entry[1]]  # the header has an empty msgid


ENTRIES = parse_po(CATALOGUE.read_text(encoding="utf-8"))


def test_the_catalogue_has_entries():
    assert len(ENTRIES) > 100


def test_every_entry_is_translated_and_not_fuzzy():
    missing = [msgid for _, msgid, msgstr, flags in ENTRIES if not msgstr or "fuzzy" in flags]
    assert missing == []


def test_the_compiled_catalogue_matches_the_source():
    stale = []
    with translation.override("de"):
        for context, msgid, msgstr, _ in ENTRIES:
            shown = translation.pgettext(context, msgid) if context else translation.gettext(msgid)
            if shown != msgstr:
                stale.append(msgid)
    assert stale == [], "run `make messages` after translating"
