"""The one base for every wire type."""

import msgspec


class Wire(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Request and response bodies: snake_case fields, unknown fields refused, defaults omitted."""
