"""A typed client of medpay's API, for the outside world (the scripted phone, the demo, partners'
tests): msgspec Structs generated from the OpenAPI document (`models.py`), a method per operation
grouped by domain, every refusal raised as `ApiError` with its stable `code`.

    async with Medpay.connect("http://127.0.0.1:8000") as api:
        tokens = await api.auth.login(m.LoginRequest(channel="wechat", code=code))
        patient = api.as_token(tokens.access_token)
        paid = await patient.bills.pay(bill_id, m.PayRequest(cash_method="wechat"))

It speaks HTTP only: nothing here imports `backend`.
"""

from miniprogram_stub.api import models
from miniprogram_stub.api._http import ApiError
from miniprogram_stub.api.client import Medpay, operations

__all__ = ["ApiError", "Medpay", "models", "operations"]
