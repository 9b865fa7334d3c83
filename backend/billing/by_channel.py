"""The payment channels (WeChat Pay, Alipay) as a cash method: an order per cash part, opened
after the bill settles, checked by the channel's order query, refunded through the channel."""

from __future__ import annotations

from typing import Any

import msgspec

from backend.auth import service as auth
from backend.auth.service import Patient
from backend.billing import cash as cash_parts
from backend.billing import methods
from backend.billing.parties import CHANNELS
from backend.billing.records import BillRecord, CashRecord
from backend.billing.tables import CashPayment
from backend.ecert import service as ecert
from backend.hospitals import service as hospitals
from backend.ledger import service as ledger
from backend.partners.channels import OrderRequest, RefundStatus, Relative
from backend.platform.runtime import Runtime

ORDER_TYPES = {"REG": "挂号", "DIAG": "门诊缴费", "PHARMACY": "药店购药", "IN_HOSP": "住院缴费"}


async def _reserve_channel(
    rt: Runtime, patient: Patient, bill: BillRecord, method: str, cash_fen: int, out_trade_no: str
) -> methods.Reserved:
    return methods.Reserved(rt.partners.channel(method).merchant_id, ledger.channel_clearing(method))


async def _open_channel_order(rt: Runtime, bill: BillRecord, cash: CashRecord) -> dict[str, str]:
    """Create (or find again: out_trade_no is the channel's dedup key) the channel order."""
    if cash.launch:
        return dict(msgspec.json.decode(cash.launch))
    institution = await hospitals.get(bill.institution_id)
    settled = bill.settled
    order = OrderRequest(
        out_trade_no=cash.out_trade_no,
        payer_id=(await auth.channel_account(settled.payer_user_id)).openid,
        description=f"{institution.name}-{ORDER_TYPES[bill.order_type]}",
        total_fen=bill.total_fen,
        cash_fen=cash.amount_fen,
        fund_fen=settled.fund_fen,
        # Both personal accounts: the patient's own, and a relative's by family mutual aid.
        personal_account_fen=settled.personal_account_fen + settled.family_account_fen,
        order_type=bill.order_type,
        institution_code=institution.code,
        institution_name=institution.name,
        notify_url=methods.notify_url(rt, cash.method),
        expires_at=bill.expires_at,
        relative=await _paid_for(rt, bill, cash),
    )
    launch: dict[str, str] = await rt.partners.channel(cash.method).create_order(order)
    return await methods.store_launch(cash, launch)


async def _paid_for(rt: Runtime, bill: BillRecord, cash: CashRecord) -> dict[str, Any] | None:
    """The patient, when someone else (a relative managing their bills) pays for them, as the
    channel's order names them: sealed once per cash part and kept, so a repeat is the same order."""
    if cash.relative is not None:
        return dict(msgspec.json.decode(cash.relative))
    if bill.insured_id in await ecert.insured_of_user(bill.settled.payer_user_id):
        return None
    name, id_type, id_number = await ecert.document_of(rt.vault, bill.insured_id)
    sealed = rt.partners.channel(cash.method).seal_relative(Relative(name, id_type, id_number))
    if sealed is None:
        return None
    kept = await CashPayment.raw(
        "UPDATE cash_payment SET relative = coalesce(relative, {}::jsonb) WHERE id = {} RETURNING relative",
        msgspec.json.encode(sealed).decode(),
        cash.id,
    )
    return dict(msgspec.json.decode(kept[0]["relative"]))


async def _check_channel_order(rt: Runtime, bill: BillRecord, cash: CashRecord, expired: bool) -> str:
    channel = rt.partners.channel(cash.method)
    status = await (channel.close_order if expired else channel.query_order)(cash.out_trade_no)
    return await cash_parts.apply_status(rt, bill.id, status, expired)


async def _refund_channel(rt: Runtime, cash: CashRecord, refund: methods.RefundOrder) -> RefundStatus:
    return await rt.partners.channel(cash.method).refund(
        cash.out_trade_no,
        refund.out_refund_no,
        refund.cash_fen,
        cash.amount_fen,
        refund.reason,
        methods.notify_url(rt, cash.method),
    )


async def _query_channel_refund(rt: Runtime, cash: CashRecord, refund: methods.RefundOrder) -> RefundStatus:
    return await rt.partners.channel(cash.method).query_refund(cash.out_trade_no, refund.out_refund_no)


CHANNEL = methods.CashMethod(
    reserve=_reserve_channel,
    open=_open_channel_order,
    check=_check_channel_order,
    refund=_refund_channel,
    query_refund=_query_channel_refund,
)
for _channel in CHANNELS:
    methods.register(_channel, CHANNEL)
