"""Callbacks to medpay: signed afresh on each attempt, retried with backoff, in order per drawdown.

A callback is `POST`ed as compact JSON `{"type", "occurred_at", "data"}` with Standard Webhooks
headers; its webhook-id stays the same on every retry and copy. A non-2xx answer or a transport
error is tried again after each of `RETRY_DELAYS_S` (longer when the answer has `Retry-After`),
then the callback is recorded as failed. Callbacks of one stream (a drawdown, an application) wait
for the one before to be delivered or given up, unless a `delay` or `reorder` fault takes one out.
"""

import asyncio
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import msgspec

from miniprogram_stub.bank import config, signing
from miniprogram_stub.bank.faults import (
    CorruptSignature,
    Delay,
    Duplicate,
    FaultBook,
    Reorder,
    SignWith,
    StaleTimestamp,
    UnknownDrawdown,
)
from miniprogram_stub.bank.records import Event

STALE_BY_S = 600
# A dev server may run for days; keep the newest deliveries only.
_MAX_DELIVERIES = 10_000


class Delivery(msgspec.Struct):
    """One callback as the bank has sent it so far: `statuses` has None for a transport error."""

    webhook_id: str
    type: str
    data: dict[str, Any]
    attempts: int = 0
    statuses: list[int | None] = msgspec.field(default_factory=list)
    state: Literal["pending", "delivered", "failed"] = "pending"


@dataclass
class _Message:
    seq: int
    record: Delivery
    body: bytes
    stream: str
    delay_s: float
    copies: int = 1
    keys: list[str] | None = None  # sign_with: instead of the current signing keys
    corrupt: bool = False
    stale: bool = False
    held: bool = False  # reorder: held back until a later message's first attempt
    in_order: bool = True
    first_sent: bool = False


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(max(float(response.headers.get("retry-after", "0")), 0.0), config.RETRY_AFTER_CAP_S)
    except ValueError:
        return 0.0  # an HTTP date: not used by the sandbox


def _flip(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 0x01]) + signature[1:]


class Courier:
    """Per-process: the callback URL, the signing keys, the faults, and every callback made."""

    def __init__(self, callback_url: str | None) -> None:
        self.callback_url = callback_url
        self.signing: list[str] = list(config.DEFAULT_SIGNING)
        self.faults = FaultBook()
        self.deliveries: deque[Delivery] = deque(maxlen=_MAX_DELIVERIES)
        self._url_known = asyncio.Event()
        if callback_url:
            self._url_known.set()
        self._streams: dict[str, deque[_Message]] = {}
        self._held: list[_Message] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._http: httpx.AsyncClient | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The app's lifespan: one HTTP client for every callback; the tasks cancelled at exit."""
        async with httpx.AsyncClient(timeout=config.CALLBACK_TIMEOUT_S) as http:
            self._http = http
            try:
                yield
            finally:
                self._cancel_all()
                self._http = None

    def set_url(self, url: str | None) -> None:
        self.callback_url = url
        if url:
            self._url_known.set()
        else:
            self._url_known.clear()

    def reset(self) -> None:
        """Forget every callback and fault; the callback URL stays."""
        self._cancel_all()
        self.deliveries.clear()
        self._streams.clear()
        self._held.clear()
        self.faults.clear()
        self.signing = list(config.DEFAULT_SIGNING)

    def pending(self) -> bool:
        return any(d.state == "pending" for d in self.deliveries)

    async def wait(self, timeout_s: float) -> bool:
        """True once no callback is pending (or held), False if `timeout_s` passes first."""
        deadline = time.monotonic() + timeout_s
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def send(self, event: Event, occurred_at: str, delay_ms: int) -> Delivery:
        """Queue a callback, shaped by the faults it takes; it is sent in the background."""
        data = dict(event.data)
        self._seq += 1
        msg = _Message(
            self._seq,
            Delivery("msg_" + secrets.token_hex(12), event.type, data),
            b"",
            event.stream,
            delay_ms / 1000,
        )
        for fault in self.faults.take(event.type, data):
            if isinstance(fault, Duplicate):
                msg.copies = fault.copies
            elif isinstance(fault, Reorder):
                msg.held, msg.in_order = True, False
            elif isinstance(fault, Delay):
                msg.delay_s += fault.delay_ms / 1000
                msg.in_order = False
            elif isinstance(fault, CorruptSignature):
                msg.corrupt = True
            elif isinstance(fault, SignWith):
                msg.keys = list(fault.keys)
            elif isinstance(fault, StaleTimestamp):
                msg.stale = True
            elif isinstance(fault, UnknownDrawdown):
                data["drawdown_id"] = str(uuid.uuid4())
        msg.body = msgspec.json.encode({"type": event.type, "occurred_at": occurred_at, "data": data})
        self.deliveries.append(msg.record)
        if msg.held:
            self._held.append(msg)
        elif not msg.in_order:
            self._spawn(self._deliver(msg))
        elif msg.stream in self._streams:
            self._streams[msg.stream].append(msg)
        else:
            self._streams[msg.stream] = deque([msg])
            self._spawn(self._drain(msg.stream))
        return msg.record

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    async def _drain(self, stream: str) -> None:
        queue = self._streams[stream]
        try:
            while queue:
                await self._deliver(queue[0])
                queue.popleft()
        finally:
            if self._streams.get(stream) is queue:
                del self._streams[stream]

    async def _deliver(self, msg: _Message) -> None:
        if msg.delay_s:
            await asyncio.sleep(msg.delay_s)
        results = await asyncio.gather(*(self._tries(msg) for _ in range(msg.copies)))
        msg.record.state = "delivered" if any(results) else "failed"

    async def _tries(self, msg: _Message) -> bool:
        """One copy of the message, tried until answered 2xx or out of delays."""
        delays = config.RETRY_DELAYS_S
        for i in range(len(delays) + 1):
            status, retry_after = await self._attempt(msg)
            if status is not None and 200 <= status < 300:
                return True
            if i < len(delays):
                await asyncio.sleep(max(delays[i], retry_after))
        return False

    async def _attempt(self, msg: _Message) -> tuple[int | None, float]:
        await self._url_known.wait()
        url, http = self.callback_url, self._http
        if url is None or http is None:
            raise RuntimeError("the courier is not running")
        timestamp = int(time.time()) - (STALE_BY_S if msg.stale else 0)
        webhook_id = msg.record.webhook_id
        signatures = signing.sign(
            signing.bank_keys(msg.keys or self.signing), webhook_id, timestamp, msg.body
        )
        if msg.corrupt:
            signatures = [_flip(s) for s in signatures]
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.header(signatures),
        }
        status: int | None = None
        retry_after = 0.0
        try:
            response = await http.post(url, content=msg.body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL):
            pass
        else:
            status, retry_after = response.status_code, _retry_after(response)
        msg.record.attempts += 1
        msg.record.statuses.append(status)
        if not msg.first_sent:
            msg.first_sent = True
            if not msg.held:
                self.release_held(msg.seq)
        return status, retry_after

    def release_held(self, seq: int | None = None) -> None:
        """`reorder`: messages held back go out just after a later message has been sent (all of
        them when `seq` is None: their faults were cleared)."""
        for held in [m for m in self._held if seq is None or m.seq < seq]:
            self._held.remove(held)
            self._spawn(self._deliver(held))
