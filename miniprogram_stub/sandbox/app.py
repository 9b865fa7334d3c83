"""The sandbox app: every partner's router, the shared `/_sandbox` facility, and `/health`."""

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import Provide

from miniprogram_stub.sandbox import alipay, ecert, face, faults, pay_phone, wechat, wechatpay
from miniprogram_stub.web import routes as web

# Adding a partner sandbox: write its module with a PARTNER, then list it here.
PARTNERS = (wechat.PARTNER, alipay.PARTNER, wechatpay.PARTNER, ecert.PARTNER, face.PARTNER)


@get("/health", operation_id="health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    # State lives in the app (not in modules) so each app, e.g. one per test, starts clean.
    state = State({"faults": faults.FaultBook(PARTNERS)})
    for partner in PARTNERS:
        state[partner.name] = partner.new_state()
    return Litestar(
        route_handlers=[
            health,
            faults.router,
            pay_phone.router,
            web.router,  # the H5 pages and their same-origin API
            web.pages,
            wechatpay.root_router,  # WeChat Pay at its real paths too, for stock SDKs
            *(p.router for p in PARTNERS),
        ],
        dependencies={"book": Provide(faults.provide_book, sync_to_thread=False)},
        state=state,
        openapi_config=None,
        debug=False,
    )
