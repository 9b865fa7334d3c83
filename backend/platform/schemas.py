"""The one base for every wire type."""

import msgspec

# The end of the text, in Python's `re` (which msgspec uses) and in the ECMA-262 regexes of JSON
# Schema alike: Python's `$` also matches before a final newline, and `\Z` is Python's alone.
END = r"$(?!\n)"
# Text as people type it: no surrounding blanks, no control characters (PostgreSQL refuses NUL).
TEXT = rf"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?{END}"
# An identifier another system gave out: visible ASCII.
IDENTIFIER = rf"^[\x21-\x7e]+{END}"


class Wire(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Request and response bodies: snake_case fields, unknown fields refused, defaults omitted."""
