"""Registering banks, their products and keys from the command line; the audit of credit."""

from __future__ import annotations

import pytest

from backend.audit import full_audit
from backend.credit.tables import Bank, BankKey, CreditLine, CreditProduct, Drawdown
from backend.ledger.tables import Account
from backend.oauth.tables import PartnerClient
from tests import servers
from tests.credit.arrange import paid_by_credit

K2_PUBLIC = "whpk_Qmn9Tz204wVOWazAcvuw0ywgGIgPMXiwvqAC37v3LzU="


async def test_an_operator_registers_a_bank_and_rotates_its_keys(settings, tmp_path):
    env = {"DATABASE_URL": settings.database.url, "REDIS_URL": settings.redis.url, "MEDPAY_ENV": "test"}
    terms = tmp_path / "terms.txt"
    terms.write_text("信用就医服务协议 2027-01")
    product = ["--product-code", "P1", "--product-name", "先诊疗后付费", "--terms-version", "2027-01"]

    created = servers.medpay(
        "bank", "create", "--code", "city-bank", "--name", "城市银行", "--api-base", "https://bank.example/credit",
        "--key", f"2027a={K2_PUBLIC}", *product, "--terms-file", str(terms), "--limit-fen", "300000", env=env,
    )  # fmt: skip
    again = servers.medpay(
        "bank", "create", "--code", "city-bank", "--name", "城市银行", "--api-base", "https://bank.example/credit",
        "--key", f"2027a={K2_PUBLIC}", *product, "--terms-file", str(terms), env=env,
    )  # fmt: skip
    bad_key = servers.medpay("bank", "add-key", "--code", "city-bank", "--key", "2027b=whpk_short", env=env)
    rotated = servers.medpay("bank", "retire-key", "--code", "city-bank", "--key-id", "2027a", env=env)
    missing = servers.medpay("bank", "retire-key", "--code", "city-bank", "--key-id", "nope", env=env)

    assert created.returncode == 0, created.stderr
    assert "client_secret:" in created.stdout and "/api/v1/callbacks/banks/city-bank" in created.stdout
    assert again.returncode == 1 and "exists already" in again.stderr
    assert bad_key.returncode == 1 and "public key" in bad_key.stderr
    assert rotated.returncode == 0 and "accepted until" in rotated.stdout
    assert missing.returncode == 1 and "no key nope" in missing.stderr
    bank = await Bank.select().where(Bank.code == "city-bank").first()
    assert await PartnerClient.exists().where(
        (PartnerClient.client_id == bank["client_id"]) & (PartnerClient.kind == "bank")
    )
    offered = await CreditProduct.select().where(CreditProduct.bank_id == bank["id"]).first()
    assert (offered["limit_fen"], offered["interest_free_days"], offered["terms_text"]) == (
        300000,
        49,
        "信用就医服务协议 2027-01",
    )
    assert (await BankKey.select(BankKey.valid_until).where(BankKey.key_id == "2027a").first())["valid_until"]


@pytest.mark.parametrize(
    ("damage", "repair", "named"),
    [
        (
            lambda: CreditLine.update({CreditLine.used_fen: CreditLine.used_fen + 1}, force=True),
            lambda: CreditLine.update({CreditLine.used_fen: CreditLine.used_fen - 1}, force=True),
            "its open drawdowns hold",
        ),
        (
            lambda: Drawdown.update({Drawdown.repaid_fen: 1}, force=True),
            lambda: Drawdown.update({Drawdown.repaid_fen: 0}, force=True),
            "its movements say",
        ),
        (
            lambda: Account.update({Account.balance_fen: Account.balance_fen + 5}).where(
                Account.kind == "credit_debt"
            ),
            lambda: Account.update({Account.balance_fen: Account.balance_fen - 5}).where(
                Account.kind == "credit_debt"
            ),
            "fen owed, the drawdowns",
        ),
    ],
    ids=["line used", "drawdown owed", "debt account"],
)
async def test_each_credit_invariant_catches_its_damage(
    client, sandbox_http, settings, bank_http, run_worker, damage, repair, named
):
    await paid_by_credit(client, sandbox_http, settings, bank_http, run_worker, 12000)
    assert (await full_audit())[0] == []

    await damage()
    problems, _ = await full_audit()
    await repair()

    assert any(named in p for p in problems), problems
