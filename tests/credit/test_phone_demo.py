"""The scripted phone pays by credit and repays, against the API and the bank as `medpay dev` runs them."""

from __future__ import annotations

import asyncio

from backend.credit.tables import Drawdown
from miniprogram_stub import client as phone
from tests import servers


async def test_the_phone_pays_by_credit_then_repays(settings, sandbox_http, bank_http, web_url, capsys):
    urls = ["--api", web_url, "--sandbox", str(sandbox_http.base_url)]
    worker = servers.arq_worker(settings)
    try:
        paid = await asyncio.to_thread(
            phone.main, ["pay", "--user", "carol", "--cash-method", "credit", *urls]
        )
        repaid = await asyncio.to_thread(phone.main, ["repay", "--user", "carol", *urls])
    finally:
        worker.terminate()
        worker.wait(10)

    printed = capsys.readouterr().out
    assert (paid, repaid) == (0, 0), printed
    assert "credit line: ACTIVE, 500000 fen available" in printed
    assert ": PAID" in printed and "fen available again" in printed
    assert (await Drawdown.select(Drawdown.status).first())["status"] == "REPAID"
