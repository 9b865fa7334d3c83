"""JWT access tokens for patients and partners, signed with an asymmetric key that carries a `kid`.

Rotation: put the new key in `MEDPAY_AUTH_SIGNING_KEY_FILE` and the old public key in
`MEDPAY_AUTH_PREVIOUS_PUBLIC_KEYS` until the last token it signed has expired.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from backend.platform.errors import Unauthorized
from backend.settings import AuthSettings

PATIENT_AUDIENCE = "medpay:patient"
PARTNER_AUDIENCE = "medpay:partner"
ALGORITHMS = ["ES256", "RS256"]
TOKEN_TYPE = "at+jwt"
C = TypeVar("C", bound=msgspec.Struct)
# Tokens whose signature and claims were checked, with their claims: a phone sends the same token
# with every request for its lifetime, and checking an ES256 signature costs about 250 µs. Only
# expiry can change a valid token's answer, and it is checked on every use.
VERIFIED_CACHE_SIZE = 10_000
# Hosts' clocks differ by a little: a token signed on one whose clock is ahead is "issued in the
# future" on another. `iat`, `nbf` and `exp` are believed this far either way (RFC 7519 allows "a few
# minutes"); a token thus lives at most this much past its `exp`.
LEEWAY_SECONDS = 30


def invalid_token() -> Unauthorized:
    """The one refusal of a token that is not good, whatever is wrong with it: a forger learns nothing."""
    return Unauthorized("the access token is invalid or expired", code="TOKEN_INVALID")


def _load(pem: bytes) -> ECKey | RSAKey:
    loaded: Any = (
        serialization.load_pem_private_key(pem, password=None)
        if b"PRIVATE KEY" in pem
        else serialization.load_pem_public_key(pem)
    )
    key_type = RSAKey if isinstance(loaded, rsa.RSAPrivateKey | rsa.RSAPublicKey) else ECKey
    key = key_type.import_key(pem, parameters={"use": "sig"})
    key.ensure_kid()  # the RFC 7638 thumbprint: stable for a key, distinct across keys
    return key


class TokenKeys:
    def __init__(self, settings: AuthSettings) -> None:
        self.issuer = settings.issuer
        self.signing_key = _load(settings.signing_key_file.read_bytes())
        self.algorithm = "ES256" if isinstance(self.signing_key, ECKey) else "RS256"
        previous = [
            _load(Path(p).read_bytes()) for p in settings.previous_public_keys.split(",") if p.strip()
        ]
        self.verify_keys = KeySet([self.signing_key, *previous])
        self._verified: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def kid(self) -> str:
        return str(self.signing_key.kid)

    def jwks(self) -> dict[str, Any]:
        return dict(self.verify_keys.as_dict(private=False))

    def sign(self, claims: dict[str, Any], ttl_seconds: int, audience: str) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        header = {"alg": self.algorithm, "kid": self.kid, "typ": TOKEN_TYPE}
        return jwt.encode(header, payload, self.signing_key)

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of a valid, unexpired token for `audience`; otherwise 401."""
        if (claims := self._verified.get((token, audience))) is not None:
            if claims["exp"] > time.time() - LEEWAY_SECONDS:
                return claims
            del self._verified[(token, audience)]
            raise invalid_token()
        claims = self._verify(token, audience)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[(token, audience)] = claims
        return claims

    def _verify(self, token: str, audience: str) -> dict[str, Any]:
        """A token exactly as `sign` makes them, or 401 with nothing said of what is wrong with it.

        Only ES256/RS256 verify (no `none`, no HMAC keyed by a public key); the header must name one
        of our keys by `kid` (a token without one is not ours, whatever key it verifies with) and say
        `at+jwt` (RFC 9068: an access token, not some other JWT); one audience, never a list."""
        try:
            decoded = jwt.decode(token, self.verify_keys, algorithms=ALGORITHMS)
            if not decoded.header.get("kid") or decoded.header.get("typ") != TOKEN_TYPE:
                raise ValueError("not a medpay access token header")
            if not isinstance(decoded.claims.get("aud"), str):
                raise ValueError("one audience")
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": audience},
                exp={"essential": True},
                iat={"essential": True},
                jti={"essential": True},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise invalid_token() from exc
        return decoded.claims

    def claims(self, token: str, audience: str, shape: type[C]) -> C:
        """The claims of a valid token, in the shape its audience's tokens have; otherwise 401.

        A token can be signed and still odd (a key leaked, a bug): its claims are checked too."""
        try:
            return msgspec.convert(self.verify(token, audience), shape)
        except msgspec.ValidationError as exc:
            raise invalid_token() from exc


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an access token is required: `Authorization: Bearer <token>`")
    return token.strip()
