"""The bank's own cashier, where a patient pays a repayment into the bank's merchant account.

`GET /_bank/cashier/{repayment_id}` is the page the cashier_url opens; the phone's answer is
`POST /_bank/cashier/{repayment_id}/confirm {"outcome": "success"|"fail"}` (unsigned: it is the phone).
"""

import html
import json
from typing import Any, Literal

import msgspec
from litestar import MediaType, Request, get, post

from miniprogram_stub.bank.schemas import RepaymentView
from miniprogram_stub.bank.state import Bank, decode


class Confirm(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Literal["success", "fail"]


_PAGE = """<!doctype html>
<html lang="zh"><head><meta charset="utf-8"><title>还款 {repayment_id}</title></head>
<body>
<h1>还款 ¥{yuan}</h1>
<p>{repayment_id} · {status}</p>
<button onclick="pay('success')">支付</button> <button onclick="pay('fail')">取消</button>
<pre id="out"></pre>
<script>
async function pay(outcome) {{
  const r = await fetch({confirm_url}, {{method: "POST", body: JSON.stringify({{outcome}})}});
  document.getElementById("out").textContent = await r.text();
}}
</script>
</body></html>
"""


@get("/cashier/{repayment_id:str}", media_type=MediaType.HTML, operation_id="bankCashierPage")
async def page(request: Request[Any, Any, Any], bank: Bank, repayment_id: str) -> str:
    r = bank.books.repayment(repayment_id)
    return _PAGE.format(
        repayment_id=html.escape(r.repayment_id),
        yuan=f"{r.amount_fen / 100:.2f}",
        status=r.status,
        # A JavaScript string inside <script>: JSON, with "</" broken up so it cannot end the script.
        confirm_url=json.dumps(f"{request.url.path}/confirm").replace("</", "<\\/"),
    )


@post("/cashier/{repayment_id:str}/confirm", status_code=200, operation_id="bankCashierConfirm")
async def confirm(request: Request[Any, Any, Any], bank: Bank, repayment_id: str) -> RepaymentView:
    """Booked and told to medpay once; confirming again changes nothing and sends nothing."""
    outcome = decode(await request.body(), Confirm).outcome
    r = bank.books.repayment(repayment_id)
    if r.status == "AWAITING_PAYMENT":
        bank.emit(bank.books.post(r) if outcome == "success" else bank.books.fail(r))
    return r.view()
