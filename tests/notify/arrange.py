"""Arrange steps the notification tests share: a paid bill's notification, a user, what was sent."""

from backend.notify import service
from backend.piccolo_conf import DB
from backend.platform import outbox
from tests.helpers import Client, bearer

PAY = "wxtpl-pay-success"


async def paid(user_id: int, bill: int = 1, amount_fen: int = 12850) -> int | None:
    """What the billing service does when a bill is paid: notify inside its transaction."""
    params = {
        "hospital": "杭州市第一人民医院",
        "amount_fen": amount_fen,
        "at": "2026-11-22T09:30:00+08:00",
        "bill_no": f"B{bill:06d}",
        "bill_id": bill,
    }
    async with DB.transaction():
        return await service.notify(user_id, "payment_succeeded", f"bill:{bill}", "paid", params)


async def user_id_of(tokens, client: Client) -> int:
    return (await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))).json()["id"]


async def delivered(sandbox_http, platform: str = "wechat") -> list[dict]:
    return (await sandbox_http.get(f"/{platform}/_sandbox/messages")).json()


async def send(runtime, message_id: int | None) -> None:
    assert message_id is not None
    await outbox.send(runtime.redis, [message_id])
