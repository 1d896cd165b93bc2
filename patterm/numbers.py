"""Numbers from text, parsed in one place: ASCII digits only (API.md).

Python's `int()` and `str.isdigit()` accept far more than a client means by a number: Unicode
digits (`٧٣`), superscripts (`¹`, which `isdigit()` accepts and `int()` refuses: a 500),
signs, whitespace and underscores; pydantic's lax `int` accepts ` 5`, `+5`, `5.0` and `5_0`.
Every numeric query and path parameter, and every id read from text, goes through here: a
plain run of ASCII digits, or a 422 (`ValueError` inside a schema).
"""

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

ASCII_DIGITS = re.compile(r"[0-9]+")
# Databases take 64-bit integers; ids and offsets stay below this bound.
MAX_ID = 2**62
_MAX_DIGITS = len(str(MAX_ID)) + 1

MESSAGE_DIGITS = "Give a whole number in the digits 0-9, without sign or spaces."


def ascii_int(text: str) -> int | None:
    """`"73"` -> 73; anything else (`"73¹"`, `"٧٣"`, `" 7"`, `"+7"`, `""`, 30 digits) -> None."""
    if not isinstance(text, str) or len(text) > _MAX_DIGITS or not ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


def _digits_only(value):
    # Text (query, path, form) must be ASCII digits; JSON numbers are left to pydantic's checks.
    if isinstance(value, bool):
        raise ValueError(MESSAGE_DIGITS)
    if isinstance(value, str):
        number = ascii_int(value)
        if number is None:
            raise ValueError(MESSAGE_DIGITS)
        return number
    return value


def AsciiInt(default=..., *, ge: int = 0, le: int = MAX_ID, **field):
    """A schema field of a whole number from ASCII digits between `ge` and `le`."""
    return Field(default, ge=ge, le=le, **field)


# An annotated int for schemas and path parameters: `limit: Digits = AsciiInt(50, ge=1, le=200)`.
Digits = Annotated[int, BeforeValidator(_digits_only)]
# A database id (1 to 2**62) from a path or query: `def view(request, patient_id: Id)`, or
# `actor: Id | None = None`. The bounds come before the validator, so that they bound the integer
# (JSON Schema `minimum`/`maximum`); after it, pydantic would write its own `ge`/`le` keys.
Id = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_digits_only)]
