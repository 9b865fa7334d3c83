"""Notifications a payment channel sends the merchant: POSTed in the background, again until the
merchant gives the channel's success answer. A WeChat Pay notification is signed afresh at each
sending (its Wechatpay-Timestamp is the sending's); an Alipay one is the same form every time."""

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import msgspec

from miniprogram_stub.sandbox import config


class Notice(Protocol):
    """One built notification: its content is fixed; `request` gives what one sending posts."""

    kind: str  # "payment" | "refund"
    event_id: str
    out_trade_no: str
    url: str

    def rendered(self) -> dict[str, Any]:
        """What the test side shows: the url and the exact request, as a sending now would post it."""
        ...

    def request(self) -> dict[str, Any]:
        """`httpx.AsyncClient.post` keyword arguments for one sending."""
        ...

    def accepted(self, response: httpx.Response) -> bool: ...


class Delivery(msgspec.Struct):
    kind: str
    event_id: str
    out_trade_no: str
    url: str
    attempts: list[str] = msgspec.field(default_factory=list)  # "HTTP 204", "ConnectError", ...
    delivered: bool = False


@dataclass
class Courier:
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set["asyncio.Task[None]"] = field(default_factory=set)

    def send(self, notice: Notice) -> Delivery:
        delivery = Delivery(notice.kind, notice.event_id, notice.out_trade_no, notice.url)
        self.deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(self._run(notice, delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    def of(self, out_trade_no: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.out_trade_no == out_trade_no]

    async def _run(self, notice: Notice, delivery: Delivery) -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            for delay in (0.0, *config.NOTIFY_RETRY_DELAYS_S):
                await asyncio.sleep(delay)
                try:
                    response = await http.post(notice.url, **notice.request())
                except httpx.HTTPError as exc:
                    delivery.attempts.append(type(exc).__name__)
                    continue
                delivery.attempts.append(f"HTTP {response.status_code}")
                if notice.accepted(response):
                    delivery.delivered = True
                    return
