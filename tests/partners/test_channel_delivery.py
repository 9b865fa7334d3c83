"""Both channels: found by name, and the sandbox delivering notifications until acknowledged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.partners.channels import Answer, NotificationInvalid, PaymentChannel
from backend.partners.clients import PartnerClients
from backend.partners.wechatpay import WechatPayClient
from backend.platform.runtime import Runtime
from tests.partners.channels import (
    ALIPAY_USER,
    OPENID,
    Sandbox,
    confirm,
    order,
    sandbox_order,
)


def test_channels_by_name(runtime: Runtime) -> None:
    partners: PartnerClients = runtime.partners
    assert partners.channel("wechat") is partners.wechatpay
    assert partners.channel("alipay") is partners.alipay_trade
    assert partners.wechatpay.merchant_id == "1900000001"
    assert partners.alipay_trade.merchant_id == "2021000000000001"
    with pytest.raises(ValueError, match="channel"):
        partners.channel("unionpay")


class Receiver:
    """Our notify endpoint, minimal: refuses the first `busy` posts with 500, then verifies."""

    def __init__(self, channel: PaymentChannel, busy: int) -> None:
        self.channel, self.busy = channel, busy
        self.events: list[Any] = []
        self.posts = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip()] = value.strip()
        length = int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))
        body = await reader.readexactly(length)
        self.posts += 1
        if self.posts <= self.busy:
            answer = Answer(500, "text/plain", b"busy")
        else:
            try:
                self.events.append(self.channel.verify_notification(headers, body))
                answer = self.channel.acknowledge()
            except NotificationInvalid as exc:
                answer = self.channel.refuse(str(exc))
        head = f"HTTP/1.1 {answer.status_code} X\r\nContent-Type: {answer.media_type}\r\n"
        writer.write(
            f"{head}Content-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n".encode() + answer.body
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver_url() -> AsyncIterator[Any]:
    servers: list[asyncio.Server] = []

    async def serve(receiver: Receiver) -> str:
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/v1/pay/notify"

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", ["wechat", "alipay"])
async def test_the_sandbox_delivers_notifications_until_acknowledged(
    name: str, runtime: Runtime, sandbox_http: Sandbox, receiver_url: Any
) -> None:
    channel = runtime.partners.channel(name)
    receiver = Receiver(channel, busy=1)
    url = await receiver_url(receiver)
    request = order(cash=3_000, payer=OPENID if name == "wechat" else ALIPAY_USER, notify_url=url)
    await channel.create_order(request)

    await confirm(sandbox_http, name, request.out_trade_no, deliver=True)

    deadline = time.monotonic() + 10
    while not (deliveries := (await sandbox_order(sandbox_http, name, request.out_trade_no))["deliveries"])[
        0
    ]["delivered"]:
        assert time.monotonic() < deadline, deliveries
        await asyncio.sleep(0.1)
    assert deliveries[0]["attempts"] == ["HTTP 500", f"HTTP {channel.acknowledge().status_code}"]
    assert deliveries[0]["url"] == url and deliveries[0]["kind"] == "payment"
    [event] = receiver.events
    assert (event.out_trade_no, event.state, event.amount_fen) == (request.out_trade_no, "PAID", 3_000)
    assert event.event_id == deliveries[0]["event_id"]


async def test_refund_notifications_are_delivered_to_the_refund_notify_url(
    wechatpay: WechatPayClient, sandbox_http: Sandbox, receiver_url: Any
) -> None:
    receiver = Receiver(wechatpay, busy=0)
    url = await receiver_url(receiver)
    request = order(cash=3_000)
    await wechatpay.create_order(request)
    await confirm(sandbox_http, "wechat", request.out_trade_no)

    await wechatpay.refund(request.out_trade_no, "RN" + request.out_trade_no, 1_200, 3_000, "", url)

    deadline = time.monotonic() + 10
    while not receiver.events:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    [event] = receiver.events
    assert (event.kind, event.out_refund_no, event.amount_fen) == (
        "refund",
        "RN" + request.out_trade_no,
        1_200,
    )
