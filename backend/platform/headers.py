"""Headers of the answers: `nosniff` on every one, `no-store` where a token or personal data is."""

from litestar.datastructures import CacheControlHeader, MutableScopeHeaders
from litestar.types import Message, Scope

# On the controllers whose answers carry tokens or personal data: no cache, shared or private, keeps them.
NO_STORE = CacheControlHeader(no_store=True)


async def no_sniffing(message: Message, scope: Scope) -> None:
    """A `before_send` hook, so 404s, 405s and errors from outside any handler get it too: a browser
    must never guess that a JSON answer (which may echo input) is HTML or script."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)["X-Content-Type-Options"] = "nosniff"
