"""Partner identity on the wire."""

from backend.platform.schemas import Wire


class PartnerRead(Wire):
    client_id: str
    kind: str
    scopes: list[str]
    institution: str | None = None
