"""The tester's hands on the bank, under `/_bank`; no real bank has these, and they are unsigned."""

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.di import Provide

from miniprogram_stub.bank import cashier
from miniprogram_stub.bank.delivery import Delivery
from miniprogram_stub.bank.faults import ApiFault, Fault, KeyName
from miniprogram_stub.bank.records import BankError, LineStatus, Rules
from miniprogram_stub.bank.schemas import BooksView, Id, LineRow, RepaymentView
from miniprogram_stub.bank.state import Bank, Call, convert, decode, provide_bank

AnyRequest = Request[Any, Any, Any]


class ClockSet(msgspec.Struct, forbid_unknown_fields=True):
    today: date | None  # None: the real date in Beijing


class ClockView(msgspec.Struct):
    today: date
    fixed: bool


class SigningSet(msgspec.Struct, forbid_unknown_fields=True):
    keys: Annotated[list[KeyName], msgspec.Meta(min_length=1)]


class ConfigSet(msgspec.Struct, forbid_unknown_fields=True):
    callback_url: Annotated[str, msgspec.Meta(min_length=1)] | None  # None: callbacks wait


class AutoDebit(msgspec.Struct, forbid_unknown_fields=True):
    drawdown_id: Id
    amount_fen: Annotated[int, msgspec.Meta(gt=0)] | None = None  # None: all that is owed


class LineSet(msgspec.Struct, forbid_unknown_fields=True):
    status: LineStatus


class Wait(msgspec.Struct, forbid_unknown_fields=True):
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0


@put("/rules", operation_id="bankSetRules")
async def set_rules(request: AnyRequest, bank: Bank) -> Rules:
    """A partial update: the fields given change, the answer is all the rules."""
    patch = decode(await request.body(), dict[str, Any])
    bank.books.rules = convert({**msgspec.to_builtins(bank.books.rules), **patch}, Rules)
    return bank.books.rules


@get("/rules", operation_id="bankGetRules")
async def get_rules(bank: Bank) -> Rules:
    return bank.books.rules


def _clock(bank: Bank) -> ClockView:
    return ClockView(bank.books.clock.today(), bank.books.clock.fixed is not None)


@put("/clock", operation_id="bankSetClock")
async def set_clock(request: AnyRequest, bank: Bank) -> ClockView:
    bank.books.clock.fixed = decode(await request.body(), ClockSet).today
    return _clock(bank)


@get("/clock", operation_id="bankGetClock")
async def get_clock(bank: Bank) -> ClockView:
    return _clock(bank)


@put("/signing", operation_id="bankSetSigning")
async def set_signing(request: AnyRequest, bank: Bank) -> SigningSet:
    """Which keys sign callbacks from now on, retries of earlier callbacks included."""
    ask = decode(await request.body(), SigningSet)
    bank.courier.signing = list(ask.keys)
    return ask


@put("/config", operation_id="bankSetConfig")
async def set_config(request: AnyRequest, bank: Bank) -> ConfigSet:
    ask = decode(await request.body(), ConfigSet)
    bank.courier.set_url(ask.callback_url)
    return ask


@post("/faults", operation_id="bankArmFault")
async def arm_fault(request: AnyRequest, bank: Bank) -> Fault:
    try:
        fault: Fault = msgspec.json.decode(await request.body(), type=Fault)
    except msgspec.DecodeError as exc:
        raise BankError(400, "BAD_REQUEST", str(exc)) from None
    bank.courier.faults.arm(fault)
    return fault


@get("/faults", operation_id="bankListFaults")
async def list_faults(bank: Bank) -> list[Fault]:
    return bank.courier.faults.armed()


@delete("/faults", operation_id="bankClearFaults")
async def clear_faults(bank: Bank) -> None:
    """Disarm every fault; callbacks a `reorder` holds back go out now."""
    bank.courier.faults.clear()
    bank.courier.release_held()


@post("/api-faults", operation_id="bankArmApiFault")
async def arm_api_fault(request: AnyRequest, bank: Bank) -> ApiFault:
    """The next `times` requests to one of the bank's APIs are answered as the fault says."""
    fault = decode(await request.body(), ApiFault)
    bank.api_faults.arm(fault)
    return fault


@get("/api-faults", operation_id="bankListApiFaults")
async def list_api_faults(bank: Bank) -> list[ApiFault]:
    return bank.api_faults.armed()


@delete("/api-faults", operation_id="bankClearApiFaults")
async def clear_api_faults(bank: Bank) -> None:
    bank.api_faults.clear()


@post("/auto-debit", status_code=200, operation_id="bankAutoDebit")
async def auto_debit(request: AnyRequest, bank: Bank) -> RepaymentView:
    """The bank debits the patient's account: booked at once, `repayment.posted` from `auto_debit`."""
    ask = decode(await request.body(), AutoDebit)
    repayment, event = bank.books.auto_debit(ask.drawdown_id, ask.amount_fen)
    bank.emit(event)
    return repayment.view()


@put("/lines/{line_ref:str}", operation_id="bankSetLine")
async def set_line(request: AnyRequest, bank: Bank, line_ref: str) -> LineRow:
    line = bank.books.set_line(line_ref, decode(await request.body(), LineSet).status)
    return LineRow(
        line.line_ref, line.application_id, line.limit_fen, line.status, bank.books.line_principal(line_ref)
    )


@get("/books", operation_id="bankBooks")
async def books(bank: Bank) -> BooksView:
    return bank.books.view()


@get("/deliveries", operation_id="bankDeliveries")
async def deliveries(bank: Bank) -> list[Delivery]:
    return list(bank.courier.deliveries)


@post("/deliveries/wait", status_code=200, operation_id="bankWaitDeliveries")
async def wait_deliveries(request: AnyRequest, bank: Bank) -> Response[list[Delivery]]:
    """Until no callback is pending or held back: 200 with them all, or 408 when the time is up."""
    ask = decode(await request.body(), Wait, empty=b"{}")
    done = await bank.courier.wait(ask.timeout_s)
    return Response(list(bank.courier.deliveries), status_code=200 if done else 408)


@get("/calls", operation_id="bankCalls")
async def calls(bank: Bank) -> list[Call]:
    return list(bank.calls)


@delete("/", operation_id="bankReset")
async def reset(bank: Bank) -> None:
    """Books, faults, rules, clock, signing, deliveries and calls as at the start; the callback URL stays."""
    bank.reset()


router = Router(
    "/_bank",
    route_handlers=[
        set_rules,
        get_rules,
        set_clock,
        get_clock,
        set_signing,
        set_config,
        arm_fault,
        list_faults,
        clear_faults,
        arm_api_fault,
        list_api_faults,
        clear_api_faults,
        auto_debit,
        set_line,
        books,
        deliveries,
        wait_deliveries,
        calls,
        reset,
        cashier.page,
        cashier.confirm,
    ],
    dependencies={"bank": Provide(provide_bank, sync_to_thread=False)},
)
