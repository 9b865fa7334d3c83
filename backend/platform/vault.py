"""Personal data at rest: AES-256-GCM under a key id (so keys rotate), and keyed digests for lookup.

A ciphertext reads `<key id>:<base64(nonce || ciphertext)>`; the first configured key encrypts,
every configured key decrypts, so rotating is: put the new key first, re-encrypt, drop the old.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.settings import SettingsError, VaultSettings


class Vault:
    def __init__(self, settings: VaultSettings) -> None:
        self._keys: dict[str, AESGCM] = {}
        for entry in settings.keys.split(","):
            key_id, _, encoded = entry.strip().partition(":")
            key = base64.b64decode(encoded)
            if not key_id or len(key) != 32:
                raise SettingsError("MEDPAY_VAULT_KEYS: each entry is `id:base64 of 32 bytes`")
            self._keys[key_id] = AESGCM(key)
        self._active = next(iter(self._keys))
        self._digest_key = base64.b64decode(settings.digest_key)

    def encrypt(self, plaintext: str, context: str) -> str:
        """`context` (e.g. "insured_person.id_number") binds a ciphertext to its column."""
        nonce = os.urandom(12)
        sealed = self._keys[self._active].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{self._active}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, ciphertext: str, context: str) -> str:
        key_id, _, encoded = ciphertext.partition(":")
        raw = base64.b64decode(encoded)
        return self._keys[key_id].decrypt(raw[:12], raw[12:], context.encode()).decode()

    def digest(self, value: str) -> str:
        """A stable keyed digest: equal values match, and nobody without the key can test a guess."""
        return hmac.new(self._digest_key, value.encode(), hashlib.sha256).hexdigest()
