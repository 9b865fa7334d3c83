"""Banks: registering them with their callback keys and credit products, rotating keys, and
finding what a callback must be verified with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from backend.credit.tables import Bank, BankKey, CreditProduct
from backend.oauth import service as oauth
from backend.oauth.service import Credentials
from backend.partners import webhooks
from backend.piccolo_conf import DB
from backend.platform.errors import AppError, NotFound


class BankRecord(msgspec.Struct, frozen=True):
    id: int
    code: str
    name: str
    api_base: str
    client_id: str


class ProductRecord(msgspec.Struct, frozen=True):
    id: int
    bank_id: int
    code: str
    name: str
    limit_fen: int
    interest_free_days: int
    daily_interest_bp: int
    terms_version: str
    terms_text: str
    active: bool


@dataclass(frozen=True)
class ProductSpec:
    code: str
    name: str
    terms_version: str
    terms_text: str
    limit_fen: int = 500_000
    interest_free_days: int = 49
    daily_interest_bp: int = 5


# In the callback URL, and in the inbox's source (`bank:<code>`, at most 32 characters).
BANK_CODE = re.compile(r"[a-z0-9-]{1,27}")
_BANK_COLUMNS = (Bank.id, Bank.code, Bank.name, Bank.api_base, Bank.client_id)


def _checked_key(public_key: str) -> str:
    try:
        webhooks.public_key(public_key)
    except ValueError as exc:
        raise AppError(f"public key: {exc}", detail={"field": "public_key"}) from None
    return public_key


async def create_bank(
    code: str,
    name: str,
    api_base: str,
    keys: dict[str, str],
    products: list[ProductSpec],
    client_id: str | None = None,
    client_secret: str | None = None,
) -> Credentials | None:
    """Register a bank: its partner client (`kind=bank`), callback keys (key id -> `whpk_...`)
    and products. Returns the client's credentials; None when the bank existed (nothing changes)."""
    if not BANK_CODE.fullmatch(code):
        raise AppError(
            "a bank's code is 1 to 27 of a-z, 0-9 and -: it is in the callback URL", detail={"field": "code"}
        )
    if await Bank.exists().where(Bank.code == code):
        return None
    for public_key in keys.values():
        _checked_key(public_key)
    now = datetime.now(UTC)
    async with DB.transaction():
        credentials = await oauth.create_client(
            "bank", name, ["credit:callback"], None, client_id=client_id, client_secret=client_secret
        )
        rows = await Bank.insert(
            Bank(
                code=code,
                name=name,
                api_base=api_base.rstrip("/"),
                client_id=credentials.client_id,
                created_at=now,
            )
        ).returning(Bank.id)
        bank_id = rows[0]["id"]
        for key_id, public_key in keys.items():
            await BankKey.insert(BankKey(bank_id=bank_id, key_id=key_id, public_key=public_key, added_at=now))
        for product in products:
            await add_product(code, product)
    return credentials


async def bank(code: str) -> BankRecord:
    row = await Bank.select(*_BANK_COLUMNS).where(Bank.code == code).first()
    if row is None:
        raise NotFound(f"no bank {code}", code="BANK_NOT_FOUND", detail={"field": "bank_code"})
    return msgspec.convert(row, BankRecord)


async def bank_by_id(bank_id: int) -> BankRecord:
    row = await Bank.select(*_BANK_COLUMNS).where(Bank.id == bank_id).first()
    assert row is not None  # a foreign key
    return msgspec.convert(row, BankRecord)


async def add_product(bank_code: str, spec: ProductSpec) -> int:
    found = await bank(bank_code)
    rows = await CreditProduct.insert(
        CreditProduct(
            bank_id=found.id,
            code=spec.code,
            name=spec.name,
            limit_fen=spec.limit_fen,
            interest_free_days=spec.interest_free_days,
            daily_interest_bp=spec.daily_interest_bp,
            terms_version=spec.terms_version,
            terms_text=spec.terms_text,
            created_at=datetime.now(UTC),
        )
    ).returning(CreditProduct.id)
    return int(rows[0]["id"])


async def products() -> list[tuple[ProductRecord, BankRecord]]:
    """Every active product with its bank, for patients to choose from."""
    rows = await CreditProduct.select().where(CreditProduct.active.eq(True)).order_by(CreditProduct.id)
    banks = {row["id"]: msgspec.convert(row, BankRecord) for row in await Bank.select(*_BANK_COLUMNS)}
    return [(msgspec.convert(row, ProductRecord), banks[row["bank_id"]]) for row in rows]


async def product(product_id: int) -> ProductRecord | None:
    row = await CreditProduct.select().where(CreditProduct.id == product_id).first()
    return None if row is None else msgspec.convert(row, ProductRecord)


async def add_key(bank_code: str, key_id: str, public_key: str) -> None:
    """A new callback key, accepted from now on beside the others (the first step of a rotation)."""
    found = await bank(bank_code)
    await BankKey.insert(
        BankKey(
            bank_id=found.id, key_id=key_id, public_key=_checked_key(public_key), added_at=datetime.now(UTC)
        )
    ).on_conflict(action="DO NOTHING")


async def retire_key(bank_code: str, key_id: str, grace: timedelta) -> datetime:
    """Stop accepting a key after `grace` (the last step of a rotation); returns when."""
    found = await bank(bank_code)
    until = datetime.now(UTC) + grace
    retired = (
        await BankKey.update({BankKey.valid_until: until})
        .where((BankKey.bank_id == found.id) & (BankKey.key_id == key_id))
        .returning(BankKey.id)
    )
    if not retired:
        raise NotFound(
            f"{bank_code} has no key {key_id}", code="BANK_KEY_NOT_FOUND", detail={"field": "key_id"}
        )
    return until


async def live_keys(bank_code: str, now: datetime) -> tuple[BankRecord, list[Ed25519PublicKey]] | None:
    """The bank and the keys its callbacks may be signed with now; None for no such bank."""
    row = await Bank.select(*_BANK_COLUMNS).where(Bank.code == bank_code).first()
    if row is None:
        return None
    keys = await BankKey.select(BankKey.public_key).where(
        (BankKey.bank_id == row["id"]) & (BankKey.valid_until.is_null() | (BankKey.valid_until > now))
    )
    return msgspec.convert(row, BankRecord), [webhooks.public_key(k["public_key"]) for k in keys]
