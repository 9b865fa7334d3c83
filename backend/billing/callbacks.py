"""Payment channels' notifications: verified, stored in the inbox, acknowledged, applied by a job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

import msgspec
import structlog

from backend.billing import jobs, payment, refunds
from backend.billing.tables import CashPayment, Refund
from backend.partners.channels import Answer, ChannelEvent, NotificationInvalid, PaymentChannel
from backend.piccolo_conf import DB
from backend.platform import inbox, outbox
from backend.platform.runtime import Runtime

log = structlog.get_logger(__name__)


async def receive(rt: Runtime, channel_name: str, headers: Mapping[str, str], body: bytes) -> Answer:
    """Answer the channel fast: what is verified is stored; what is not is refused and dropped."""
    channel: PaymentChannel = rt.partners.channel(channel_name)
    try:
        event = channel.verify_notification(headers, body)
    except NotificationInvalid as exc:
        log.warning("channel notification refused", channel=channel_name, reason=str(exc))
        return channel.refuse(str(exc))
    payload = msgspec.to_builtins(asdict(event))
    async with DB.transaction():
        inbox_id = await inbox.store(channel_name, event.event_id, event.kind, payload)
        message = await outbox.add(jobs.APPLY_CHANNEL_EVENT, {"inbox_id": inbox_id}) if inbox_id else None
    if message is not None:
        await outbox.send(rt.redis, [message])
    log.info(
        "channel notification stored", channel=channel_name, inbox_id=inbox_id, duplicate=inbox_id is None
    )
    return channel.acknowledge()


async def apply(rt: Runtime, inbox_id: int) -> str:
    """Job: apply one stored notification. Its effects are guarded, so a second run changes nothing."""
    row = await inbox.load(inbox_id)
    if row is None or row["state"] != "received":
        return "nothing to apply"
    payload = row["payload"] if isinstance(row["payload"], dict) else msgspec.json.decode(row["payload"])
    event = msgspec.convert(payload, ChannelEvent)
    outcome = await (_apply_payment(rt, event) if event.kind == "payment" else _apply_refund(rt, event))
    await inbox.mark(inbox_id, "ignored" if outcome.startswith("ignored") else "applied", outcome)
    log.info("channel notification applied", inbox_id=inbox_id, outcome=outcome)
    return outcome


async def _apply_payment(rt: Runtime, event: ChannelEvent) -> str:
    if event.state == "PAID":
        return await payment.complete_cash(
            rt,
            event.out_trade_no,
            amount_fen=event.amount_fen,
            merchant_id=event.merchant_id,
            transaction_id=event.transaction_id,
            paid_at=event.occurred_at,
        )
    # A closed or failed order is confirmed by the channel's order query before the bill ends.
    cash = (
        await CashPayment.select(CashPayment.bill_id)
        .where(CashPayment.out_trade_no == event.out_trade_no)
        .first()
    )
    if cash is None:
        return "ignored: no such order"
    return f"checked: {await payment.check(rt, cash['bill_id'])}"


async def _apply_refund(rt: Runtime, event: ChannelEvent) -> str:
    """A refund notification prompts a query: the channel's refund record is what counts
    (Alipay reports the trade's total refunded so far, not this refund's amount)."""
    if event.merchant_id != rt.partners.channel(event.channel).merchant_id:
        return f"ignored: merchant {event.merchant_id} is not ours"
    query = Refund.select(Refund.id).where(Refund.state.is_in(["PROCESSING", "ATTENTION"]))
    if event.out_refund_no:
        query = query.where(Refund.out_refund_no == event.out_refund_no)
    else:
        query = query.where(
            Refund.bill_id.is_in(
                CashPayment.select(CashPayment.bill_id).where(CashPayment.out_trade_no == event.out_trade_no)
            )
        )
    outcomes = [await refunds.check(rt, row["id"]) for row in await query]
    return ", ".join(outcomes) if outcomes else "nothing to confirm"
