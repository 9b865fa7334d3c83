"""One-time login codes and stable pseudonymous user ids, as the platforms hand them out."""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from miniprogram_stub.sandbox import config

T = TypeVar("T")


class CodeInvalidError(Exception):
    """Unknown, expired, or issued to another app."""


class CodeUsedError(Exception):
    """Already exchanged once."""


@dataclass
class _Issued(Generic[T]):
    owner: str
    subject: T
    expires_at: float
    used: bool = False


class OneTimeCodes(Generic[T]):
    """Random codes bound to an app and a user, valid for a few minutes and one exchange."""

    def __init__(self, make_code: Callable[[], str], ttl_s: float = config.CODE_TTL_S) -> None:
        self._make_code = make_code
        self._ttl_s = ttl_s
        self._issued: dict[str, _Issued[T]] = {}

    def issue(self, owner: str, subject: T) -> str:
        now = time.monotonic()
        # Used codes are kept until they expire so a replay can be told apart from garbage.
        self._issued = {c: i for c, i in self._issued.items() if i.expires_at > now}
        code = self._make_code()
        self._issued[code] = _Issued(owner, subject, now + self._ttl_s)
        return code

    def redeem(self, code: str, owner: str) -> T:
        issued = self._issued.get(code)
        if issued is None or issued.owner != owner or issued.expires_at <= time.monotonic():
            raise CodeInvalidError(code)
        if issued.used:
            raise CodeUsedError(code)
        issued.used = True
        return issued.subject


def stable_digest(*parts: str) -> bytes:
    """Same parts, same bytes: logging in twice as one user yields the same ids."""
    return hashlib.sha256("\x1f".join(parts).encode()).digest()
