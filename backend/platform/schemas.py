"""The one base for every wire type, and the rules its text and amounts follow."""

from typing import Annotated

import msgspec

# The end of the text, in Python's `re` (which msgspec uses) and in the ECMA-262 regexes of JSON
# Schema alike: Python's `$` also matches before a final newline, and `\Z` is Python's alone.
END = r"$(?!\n)"
# Characters no text of ours holds: controls (C0, DEL, C1: PostgreSQL cannot even store NUL), and
# the invisible format characters that change how text reads without showing themselves: the soft
# hyphen, zero-width spaces and joiners, bidi marks, embeddings, overrides and isolates, line and
# paragraph separators, the word joiner, the byte-order mark. `_LINE_BREAKS` are allowed in prose.
_LINE_BREAKS = r"\t\n\r"
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_INVISIBLE = r"\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
HIDDEN = f"{_LINE_BREAKS}{_CONTROLS}{_INVISIBLE}"
# Text as people type it: no surrounding blanks, no control or invisible characters.
TEXT = rf"^[^\s{HIDDEN}](?:[^{HIDDEN}]*[^\s{HIDDEN}])?{END}"
# Several lines of text (a department's introduction): line breaks and tabs inside, nothing else
# hidden, and no blank at the end.
PROSE = rf"^(?:[^{_CONTROLS}{_INVISIBLE}]*[^\s{_CONTROLS}{_INVISIBLE}])?{END}"
# What people type or scanners read and the server tidies (a document number, a code): spaces are
# trimmed there, nothing hidden passes.
PRINTED = rf"^[^{HIDDEN}]+{END}"
# An identifier or token another system (or medpay) gave out: visible ASCII.
IDENTIFIER = rf"^[\x21-\x7e]+{END}"
# Free text a partner wrote (a bank's reason for declining): kept as it came, blanks and invisible
# characters included, since refusing the event over its wording would leave its money waiting;
# only NUL, which PostgreSQL cannot store, is refused.
PARTNER_TEXT = rf"^[^\x00]*{END}"

# The most any amount on the wire may be: 10 billion yuan, a bill's largest total.
MAX_FEN = 10**12
Fen = Annotated[int, msgspec.Meta(ge=1, le=MAX_FEN)]
FenOrZero = Annotated[int, msgspec.Meta(ge=0, le=MAX_FEN)]
# A row id of ours: PostgreSQL's `integer`.
RowId = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class Wire(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Request and response bodies: snake_case fields, unknown fields refused, defaults omitted."""
