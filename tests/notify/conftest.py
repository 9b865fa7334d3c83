"""Notification tests start with the platforms' message lists empty, and with alice logged in."""

import pytest

from tests.helpers import Client, login
from tests.notify.arrange import user_id_of


@pytest.fixture(autouse=True)
async def clean_platforms(sandbox_http, runtime) -> None:
    for platform in ("wechat", "alipay"):
        await sandbox_http.delete(f"/{platform}/_sandbox/messages")


@pytest.fixture
async def alice(client: Client, sandbox_http, settings) -> dict:
    tokens = await login(client, sandbox_http, settings, user="alice")
    return {"tokens": tokens, "id": await user_id_of(tokens, client)}
