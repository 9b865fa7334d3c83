"""Hostile input at every endpoint, derived from the published document so that a new endpoint is
covered as soon as it is published: every field of every request body, and every query parameter,
sent huge, negative, fractional, of the wrong type, empty, 100 KB long, or holding control and
invisible characters; bodies nested 10,000 deep, above the route's size limit, or not sent as JSON.

Each is refused with a 4xx in the error envelope under a documented code, naming the field at
fault, and writes nothing: every table's rows hash alike before and after, and Redis gains no key.
Identity documents and names get their own cases: full-width digits are one spelling of the same
document (normalized, never a second person); hidden characters are refused before the
e-certificate platform is asked.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from backend.app import create_app
from backend.audit import full_audit
from backend.credit import banks
from backend.credit.callbacks import HANDLERS as BANK_EVENTS
from backend.ecert import people
from backend.ecert.tables import EcertBinding, InsuredPerson
from backend.ledger.tables import Journal
from backend.partners import webhooks
from backend.piccolo_conf import DB
from backend.platform.runtime import Runtime
from backend.platform.schemas import MAX_FEN
from backend.platform.tables import InboxEvent
from backend.seed import seed
from backend.settings import Settings
from tests.billing.factories import insured_patient
from tests.booking.arrange import china_today, publish, schedule, session
from tests.conftest import TABLES
from tests.helpers import bearer, bind_ecert, face_assertion, login, partner_token, sandbox_calls
from tests.identities import resident_id
from tests.kiosk.arrange import kiosk

APP: Litestar = create_app(Settings.from_env({"MEDPAY_ENV": "test"}))
DOCUMENT: dict[str, Any] = APP.openapi_schema.to_schema()
COMPONENTS: dict[str, Any] = DOCUMENT["components"]["schemas"]
DOCUMENTED_CODES = set(
    re.findall(r"^\| `([A-Z_]+)` \|", (Path(__file__).parents[2] / "docs/errors.md").read_text(), re.M)
)
TRIED: Counter[str] = Counter()  # inputs sent, by operation: in the session's summary

# Characters no field may hold, and what each is: refused wherever text goes.
HIDDEN = {
    "NUL": "\u0000",
    "C1 control": "\u0085",
    "zero-width space": "\u200b",
    "zero-width joiner": "\u200d",
    "RTL override": "\u202e",
    "byte-order mark": "\ufeff",
}
# Characters that are text, but not in an identifier: refused where the field's pattern is ASCII.
LOOKALIKE = {"full-width digits": "１１０１０５", "combining mark": "\u0301"}
DEEP = 10_000
NOW = "2026-12-01T08:00:00+08:00"


# -- the document ------------------------------------------------------------------------------


def _handlers() -> dict[tuple[str, str], HTTPRouteHandler]:
    found = {}
    for route in APP.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                found[(method.lower(), path)] = handler
    return found


HANDLERS = _handlers()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def handler(self) -> HTTPRouteHandler:
        return HANDLERS[(self.method, self.path)]

    @property
    def body_limit(self) -> int:
        return int(self.handler.resolve_request_max_body_size() or 0)

    @property
    def media_type(self) -> str | None:
        content = (self.spec.get("requestBody") or {}).get("content") or {}
        return next(iter(content), None)

    @property
    def body_schema(self) -> dict[str, Any]:
        return resolve(self.spec["requestBody"]["content"][self.media_type]["schema"])

    @property
    def reads_body(self) -> bool:
        """Documented with a body, or given a body limit of its own (the callbacks, read raw)."""
        return self.media_type is not None or self.body_limit != APP.request_max_body_size

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]

    def url(self) -> str:
        """The path with well-formed parameters: the body and the query are what is at fault."""
        values = {p["name"]: sample(concrete(p["schema"])[0]) for p in self.parameters("path")}
        return self.path.format(**values)


OPERATIONS = [
    Operation(method, path, spec)
    for path, methods in DOCUMENT["paths"].items()
    for method, spec in methods.items()
    if isinstance(spec, dict) and "responses" in spec
]
JSON_BODIES = [op for op in OPERATIONS if op.media_type == "application/json"]
WITH_QUERY = [op for op in OPERATIONS if op.parameters("query")]
READING_BODIES = [op for op in OPERATIONS if op.reads_body]


def resolve(schema: dict[str, Any], defs: dict[str, Any] = COMPONENTS) -> dict[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def concrete(schema: dict[str, Any], defs: dict[str, Any] = COMPONENTS) -> tuple[dict[str, Any], bool]:
    """The schema of the value itself, with the constraints Litestar writes beside a `oneOf`, and
    whether null is allowed too."""
    schema = resolve(schema, defs)
    nullable = False
    if "oneOf" in schema or "anyOf" in schema:
        branches = [resolve(b, defs) for b in schema.get("oneOf") or schema["anyOf"]]
        nullable = any(b.get("type") == "null" for b in branches)
        real = [b for b in branches if b.get("type") != "null"]
        assert len(real) == 1, f"a choice of types the test cannot aim at: {schema}"
        schema = {**real[0], **{k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}}
    if isinstance(schema.get("type"), list):
        types = schema["type"]
        nullable = nullable or "null" in types
        (kind,) = [t for t in types if t != "null"]
        schema = {**schema, "type": kind}
        if "enum" in schema:
            schema["enum"] = [v for v in schema["enum"] if v is not None]
    return schema, nullable


@dataclass(frozen=True)
class Field:
    path: tuple[str | int, ...]
    schema: dict[str, Any]
    nullable: bool

    @property
    def name(self) -> str:
        """As the error names it: `items[0].unit_price_fen`, `results[...]` for a map's values."""
        text = ""
        for part in self.path:
            if isinstance(part, int):
                text += f"[{part}]"
            elif part == MAP_KEY:
                text += "[...]"
            else:
                text += f".{part}" if text else part
        return text

    @property
    def kind(self) -> str:
        return "enum" if "enum" in self.schema else str(self.schema.get("type"))


MAP_KEY = "tmpl-1"  # the key a map's entry is sampled under


def fields(
    schema: dict[str, Any], path: tuple[str | int, ...] = (), defs: dict[str, Any] = COMPONENTS
) -> Iterator[Field]:
    schema, nullable = concrete(schema, defs)
    if path:
        yield Field(path, schema, nullable)
    if schema.get("type") == "object":
        for name, sub in (schema.get("properties") or {}).items():
            yield from fields(sub, (*path, name), defs)
        if isinstance(schema.get("additionalProperties"), dict):
            yield from fields(schema["additionalProperties"], (*path, MAP_KEY), defs)
        if "propertyNames" in schema:  # only in the enforced schema: the keys' own rules
            yield Field((*path, "(keys)"), {"type": "string", **schema["propertyNames"]}, False)
    elif schema.get("type") == "array":
        yield from fields(schema["items"], (*path, 0), defs)


# Values of the document's patterns, tried in turn; lengths are fitted to the field. Text first, so
# that names are tested as names; a field the document gives no pattern gets visible ASCII, which
# any rule the server keeps for itself (a list's items, say) accepts.
_CANDIDATES = ["测试", "A1", "08:00", "330106", "ABCDEFGHJKLMNPQR"]


def sample(schema: dict[str, Any]) -> Any:
    """A value the schema accepts, with every optional field present."""
    schema, _ = concrete(schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        value = {name: sample(sub) for name, sub in (schema.get("properties") or {}).items()}
        if isinstance(schema.get("additionalProperties"), dict):
            value[MAP_KEY] = sample(schema["additionalProperties"])
        return value
    if kind == "array":
        return [sample(schema["items"]) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "boolean":
        return True
    if kind == "integer":
        return int(max(1, schema.get("minimum", 1)))
    assert kind == "string", f"no sample for {schema}"
    formats = {
        "date": (date.today() - timedelta(days=1)).isoformat(),
        "date-time": "2026-12-01T08:00:00+08:00",
        "uuid": "0b1e6f1e-5f0c-4f43-9b5e-6f0d8c0f2a11",
    }
    if "format" in schema:
        return formats[schema["format"]]
    low, high = int(schema.get("minLength", 1)), int(schema.get("maxLength", 64))
    for candidate in _CANDIDATES if "pattern" in schema else _CANDIDATES[1:]:
        text = (candidate * (low // len(candidate) + 1))[: max(low, min(high, len(candidate)))]
        if low <= len(text) <= high and re.search(schema.get("pattern", ""), text):
            return text
    raise AssertionError(f"add a value of {schema['pattern']!r} to _CANDIDATES")


def accepts(schema: dict[str, Any], value: str) -> bool:
    """Whether the document says `value` may be sent where `schema` is."""
    low, high = schema.get("minLength", 0), schema.get("maxLength", float("inf"))
    return low <= len(value) <= high and re.search(schema.get("pattern", ""), value) is not None


def hostile(field: Field, valid: Any) -> Iterator[tuple[str, Any]]:
    """Values the schema must refuse in `field`, whose valid value is `valid`."""
    schema, kind = field.schema, field.kind
    if kind == "integer":
        yield from [("2**63", 2**63), ("10**30", 10**30), ("1.5", 1.5), ("1.0", 1.0), ("'1'", "1")]
        yield from [("true", True), ("[1]", [1])]
        if "maximum" in schema:
            yield "maximum + 1", int(schema["maximum"]) + 1
        if schema.get("minimum", -1) >= 0 or str(field.path[-1]).endswith("_fen"):
            yield "-1", -1
        if schema.get("minimum", 0) >= 1:
            yield "0", 0
    elif kind == "string":
        yield from [("100 KB", valid[:1] * 100_000), ("1", 1), ("true", True), ("['x']", [valid])]
        if schema.get("minLength", 0) >= 1:
            yield "empty", ""
        if "format" in schema:
            yield "not a " + schema["format"], "2026-13-45T25:61" if schema["format"] != "uuid" else "x" * 36
        else:
            for label, char in HIDDEN.items():
                yield label, tricked(valid, char)
            for label, chars in LOOKALIKE.items():
                if not accepts(schema, tricked(valid, chars)):
                    yield label, tricked(valid, chars)
    elif kind == "enum":
        member = schema["enum"][0]
        yield from [("not a member", "NOT_A_MEMBER"), ("1", 1), ("[member]", [member])]
        if isinstance(member, str):
            yield from [("lower case", member.swapcase()), ("zero-width space", member + "\u200b")]
    elif kind == "boolean":
        yield from [("1", 1), ("'true'", "true"), ("[true]", [True])]
    elif kind == "array":
        yield from [("a string", "x"), ("an object", {})]
        if schema.get("minItems", 0) >= 1:
            yield "empty", []
        if schema.get("maxItems", 10**6) <= 1000:
            yield "one too many", [valid[0]] * (int(schema["maxItems"]) + 1)
    elif kind == "object":
        yield from [("a string", "x"), ("an array", [])]
        if isinstance(valid, dict) and schema.get("additionalProperties") is False:
            yield "an unknown field", {**valid, "unexpected": 1}
    if not field.nullable and kind != "object":
        yield "null", None


def tricked(valid: str, chars: str) -> str:
    """`chars` in the middle of `valid`, in place of what was there: as long as the valid value."""
    middle = len(valid) // 2
    return (valid[:middle] + chars + valid[middle + len(chars) :])[: max(len(valid), len(chars) + 1)]


def put(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    changed = copy.deepcopy(body)
    target = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return changed


# -- the service -------------------------------------------------------------------------------


@dataclass
class Callers:
    patient: dict[str, str]
    hospital: dict[str, str]
    terminal: dict[str, str]
    kiosk: dict[str, str]
    kiosk_id: str

    def headers(self, op: Operation) -> dict[str, str]:
        """The token the operation's security names, so that only the input is at fault."""
        headers = {"Idempotency-Key": uuid.uuid4().hex} if op.parameters("header") else {}
        for requirement in op.spec.get("security") or []:
            if "patient" in requirement:
                return {**headers, **self.patient}
            if "partner" in requirement:
                if op.path.startswith(("/api/v1/partner/ecert", "/api/v1/partner/visits")):
                    return {**headers, **self.terminal}
                if op.path.startswith("/api/v1/partner/kiosk"):
                    return {**headers, **self.kiosk}
                return {**headers, **self.hospital}
        return headers


@pytest.fixture
async def callers(client: httpx.AsyncClient, sandbox_http: httpx.AsyncClient, settings: Settings) -> Callers:
    """A patient logged in, a hospital's system, a terminal and a kiosk: tokens enough to get past
    every operation's security to its input."""
    await seed()
    tokens = await login(client, sandbox_http, settings, user=f"hostile-{uuid.uuid4().hex[:8]}")
    hospital = ["bills:write", "bookings:write", "bookings:check-in"]
    terminal = ["ecert:decode", "bookings:check-in"]
    at = await kiosk(client)
    return Callers(
        patient=bearer(tokens["access_token"]),
        hospital=bearer(await partner_token(client, "hospital", hospital, "H33010001")),
        terminal=bearer(await partner_token(client, "terminal", terminal, "H33010001")),
        kiosk=at.headers,
        kiosk_id=at.client_id,
    )


async def written(runtime: Runtime) -> tuple[dict[str, str], set[bytes]]:
    """What is stored: a hash of each table's rows, and Redis's keys."""
    rows = "(SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM \"{0}\" t) AS \"{0}\""
    hashes = ", ".join(rows.format(table) for table in TABLES)
    async with DB.pool.acquire() as connection:
        row = await connection.fetchrow(f"SELECT {hashes}")
    return dict(row), set(await runtime.redis.keys("*"))


class Refusals:
    """Sends hostile requests for one operation and holds each answer to the rules."""

    def __init__(self, op: Operation, client: httpx.AsyncClient, callers: Callers, runtime: Runtime) -> None:
        self.op, self.client, self.callers, self.runtime = op, client, callers, runtime
        self.problems: list[str] = []
        self.sent = 0

    async def send(
        self,
        what: str,
        *,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
        url: str | None = None,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        """Send `content` (and `params`); the answer must refuse it as said, and write nothing."""
        before = await written(self.runtime)
        headers = {**self.callers.headers(self.op), **(headers or {})}
        if content_type is not None:
            headers["Content-Type"] = content_type
        answer = await self.client.request(
            self.op.method.upper(), url or self.op.url(), content=content, params=params, headers=headers
        )
        after = await written(self.runtime)
        TRIED[self.op.label] += 1
        self.sent += 1
        problem = self._judge(answer, status, code, field)
        changed = sorted(t for t in TABLES if before[0][t] != after[0][t])
        added = after[1] - before[1]
        if changed or added:
            problem = (problem + "; " if problem else "") + f"wrote to {changed} {sorted(added)}"
        if problem:
            self.problems.append(f"{what}: {problem} ({answer.status_code} {answer.text[:300]})")

    def _judge(self, answer: httpx.Response, status: int | None, code: str | None, field: str | None) -> str:
        if not 400 <= answer.status_code < 500:
            return "not refused with a 4xx"
        try:
            error = answer.json()["error"]
            assert isinstance(error["message"], str) and isinstance(error["detail"], dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            return "not the error envelope"
        if error["code"] not in DOCUMENTED_CODES:
            return f"code {error['code']} is not in docs/errors.md"
        if status is not None and answer.status_code != status:
            return f"status is not {status}"
        if code is not None and error["code"] != code:
            return f"code is not {code}"
        if field is not None and error["detail"].get("field") != field:
            return f"detail.field is {error['detail'].get('field')!r}, not {field!r}"
        return ""

    def check(self) -> None:
        assert self.sent, f"{self.op.label}: nothing was sent"
        assert not self.problems, f"{self.op.label}:\n" + "\n".join(self.problems)


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


@pytest.fixture
def refusals(client: httpx.AsyncClient, callers: Callers, runtime: Runtime) -> Any:
    return lambda op: Refusals(op, client, callers, runtime)


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    """How many inputs were tried, on which operations: in the session's summary."""
    yield
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            terminal.write_line(f"\nhostile inputs: {sum(TRIED.values())} over {len(TRIED)} operations")
            for label, count in sorted(TRIED.items()):
                terminal.write_line(f"  {count:5d}  {label}")


# -- the tests ---------------------------------------------------------------------------------


def enforced(shape: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema the server decodes by (msgspec's, of the handler's type), and its parts: the
    document drops the rules of a list's items and of a map's keys, the server keeps them. msgspec
    writes a datetime as a bare string: it is marked as the date-time it is."""
    schema = msgspec.json.schema(shape)
    defs = schema.get("$defs", {})
    for struct in _structs(msgspec.inspect.type_info(shape), set()):
        properties = defs[struct.cls.__name__]["properties"]
        for part in struct.fields:
            if any(isinstance(t, msgspec.inspect.DateTimeType) for t in _members(part.type)):
                prop = properties[part.encode_name]
                for branch in prop.get("anyOf", [prop]):
                    if branch.get("type") == "string":
                        branch["format"] = "date-time"
    return schema, defs


def _members(info: Any) -> list[Any]:
    info = info.type if isinstance(info, msgspec.inspect.Metadata) else info
    return list(info.types) if isinstance(info, msgspec.inspect.UnionType) else [info]


def _structs(info: Any, seen: set[type]) -> Iterator[Any]:
    """Every struct type reachable from `info`."""
    for member in _members(info):
        if isinstance(member, msgspec.inspect.StructType) and member.cls not in seen:
            seen.add(member.cls)
            yield member
            for part in member.fields:
                yield from _structs(part.type, seen)
        for inner in ("item_type", "key_type", "value_type"):
            if hasattr(member, inner):
                yield from _structs(getattr(member, inner), seen)


def test_every_value_a_body_may_hold_is_bounded() -> None:
    """Every integer of every request body has both bounds (an amount within 0..MAX_FEN), every
    string a maximum length, and a pattern (or a format or a list of values) that refuses control
    and invisible characters: what the server stores or looks up can hold neither."""
    problems = []
    for op in JSON_BODIES:
        schema, defs = enforced(op.handler.parsed_fn_signature.parameters["data"].annotation)
        for field in fields(schema, defs=defs):
            where = f"{op.label} {field.name}"
            if field.kind == "integer":
                low, high = field.schema.get("minimum"), field.schema.get("maximum")
                if low is None or high is None:
                    problems.append(f"{where}: an integer without both bounds")
                elif str(field.path[-1]).endswith("_fen") and not (low >= 0 and high <= MAX_FEN):
                    problems.append(f"{where}: an amount outside 0..{MAX_FEN}")
            elif field.kind == "string" and "format" not in field.schema:
                if "maxLength" not in field.schema:
                    problems.append(f"{where}: a string without a maximum length")
                valid = sample(field.schema)
                if let_through := [k for k, c in HIDDEN.items() if accepts(field.schema, tricked(valid, c))]:
                    problems.append(f"{where}: a string that lets {let_through} through")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("op", JSON_BODIES, ids=lambda op: op.label)
async def test_hostile_values_in_a_body_are_refused_naming_the_field(op: Operation, refusals: Any) -> None:
    """A valid body (every optional field present) with one field made hostile at a time: 400
    `VALIDATION_ERROR` naming that field, whatever the rest, and nothing written."""
    body = sample(op.body_schema)
    msgspec.json.decode(
        encode(body), type=op.handler.parsed_fn_signature.parameters["data"].annotation, strict=True
    )
    check = refusals(op)
    for field in fields(op.body_schema):
        valid = body
        for part in field.path:
            valid = valid[part]
        for label, value in hostile(field, valid):
            named = f"{field.name}.unexpected" if label == "an unknown field" else field.name
            await check.send(
                f"{field.name} = {label}",
                content=encode(put(body, field.path, value)),
                status=400,
                code="VALIDATION_ERROR",
                field=named,
            )
        if field.kind == "string":  # a lone surrogate, as a JSON escape: no UTF-8 text holds one
            raw = json.dumps(put(body, field.path, "\ud800"), ensure_ascii=True).encode()
            await check.send(f"{field.name} = lone surrogate", content=raw, status=400, code="BAD_REQUEST")
    check.check()


@pytest.mark.parametrize("op", JSON_BODIES, ids=lambda op: op.label)
async def test_malformed_deep_or_mistyped_bodies_are_refused(op: Operation, refusals: Any) -> None:
    """Bodies that are not the operation's JSON object at all: nested 10,000 deep, cut short, not
    UTF-8, a bare value, an unknown field, empty, or sent under another media type."""
    body = encode(sample(op.body_schema))
    first = next(iter(op.body_schema.get("properties") or {"x": None}))
    deep = b"[" * DEEP + b"]" * DEEP
    check = refusals(op)
    await check.send("nested 10,000 deep", content=deep, status=400)
    await check.send(
        f"{first} nested 10,000 deep", content=b'{"%s": %s}' % (first.encode(), deep), status=400
    )
    await check.send("an object nested 10,000 deep", content=b'{"a":' * DEEP + b"1" + b"}" * DEEP, status=400)
    await check.send("not JSON", content=body[:-1], status=400, code="BAD_REQUEST")
    await check.send(
        "not UTF-8", content=body.replace(b"{", b'{"\xff": 1, ', 1), status=400, code="BAD_REQUEST"
    )
    await check.send("a bare value", content=b"1", status=400, code="VALIDATION_ERROR")
    await check.send(
        "an unknown field",
        content=body.replace(b"{", b'{"unexpected": 1, ', 1),
        status=400,
        code="VALIDATION_ERROR",
        field="unexpected",
    )
    await check.send("empty", content=b"", status=400)
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ]:
        await check.send(
            f"sent as {content_type}",
            content=body,
            content_type=content_type,
            status=415,
            code="UNSUPPORTED_MEDIA_TYPE",
            field="Content-Type",
        )
    check.check()


@pytest.mark.parametrize("op", READING_BODIES, ids=lambda op: op.label)
async def test_a_body_above_the_routes_limit_is_413(op: Operation, refusals: Any) -> None:
    """Past the route's own limit (the callbacks' and the token form's are smaller, the schedules'
    larger) a body is refused unread; 100 KB within the limit is read and refused for what it is."""
    limit = op.body_limit
    padding = b'{"x": "' + b"a" * limit + b'"}'
    check = refusals(op)
    await check.send(f"{limit + 10} bytes", content=padding, status=413, code="PAYLOAD_TOO_LARGE")
    if op.media_type == "application/json" and limit > 100_000:  # 100 KB, within the limit, is read
        await check.send("100 KB within the limit", content=b'{"x": "' + b"a" * 100_000 + b'"}', status=400)
    check.check()


@pytest.fixture
async def catalogue(
    client: httpx.AsyncClient, sandbox_http: httpx.AsyncClient, settings: Settings, callers: Callers
) -> str:
    """Hospital 1 with department 1, doctor 1 and today's and tomorrow's sessions, and a patient's
    visit at the kiosk: so that a query reaches the list it is for. The visit's token."""
    today = china_today()
    await publish(
        client, schedule([session(day=today, start="00:00", end="23:59"), session()]), callers.hospital
    )
    patient = await insured_patient(client, sandbox_http, settings)
    answer = await client.post(
        "/api/v1/partner/ecert/face",
        json={
            "face_assertion": await face_assertion(sandbox_http, patient.id_number, kiosk=callers.kiosk_id)
        },
        headers=callers.kiosk,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["visit_token"])


@pytest.mark.parametrize("op", WITH_QUERY, ids=lambda op: op.label)
async def test_hostile_query_parameters_are_refused_naming_them(
    op: Operation, refusals: Any, catalogue: str
) -> None:
    """A value the document refuses is a 400 naming the parameter; one it lets pass but that is
    not a real value (a cursor never given out, a visit that is not one) is refused by the service,
    naming the parameter too. A query is text: `1` and `true` are a string's values there."""
    base = {
        p["name"]: catalogue if p["name"] == "visit_token" else sample(concrete(p["schema"])[0])
        for p in op.parameters("query")
        if p.get("required")
    }
    body = encode(sample(op.body_schema)) if op.media_type == "application/json" else None
    check = refusals(op)
    for parameter in op.parameters("query"):
        schema, _ = concrete(parameter["schema"])
        field = Field((parameter["name"],), schema, nullable=True)
        valid = catalogue if parameter["name"] == "visit_token" else sample(schema)
        values = list(hostile(field, valid))
        if field.kind == "string" and "format" not in schema:
            values.append(
                ("a character past the maximum", valid[:1] * (int(schema.get("maxLength", 8191)) + 1))
            )
        for label, value in values:
            if (
                isinstance(value, list | dict | bool)
                or value is None
                or label in ("100 KB", "1", "1.0", "'1'")
            ):
                continue  # a query holds text only: the URL's length limits it, `1` is an integer's text
            text = str(value)
            declared = field.kind != "string" or "format" in schema or not accepts(schema, text)
            await check.send(
                f"{parameter['name']} = {label}",
                params={**base, parameter["name"]: text},
                content=body,
                status=400 if declared else None,
                code="VALIDATION_ERROR" if declared else None,
                field=parameter["name"],
            )
    check.check()


FORMS = [op for op in OPERATIONS if op.media_type == "application/x-www-form-urlencoded"]


@pytest.mark.parametrize("op", FORMS, ids=lambda op: op.label)
async def test_hostile_form_fields_are_refused_in_oauths_terms(op: Operation, refusals: Any) -> None:
    """The token form is read as authlib reads it, so nothing in it is refused before authlib
    answers: whatever a field holds, the answer is an OAuth2 error in the envelope, nothing stored."""
    check = refusals(op)
    for name in op.body_schema.get("properties") or {}:
        for label, value in [*HIDDEN.items(), ("8 KB", "a" * 8192), ("full-width digits", "１１０１")]:
            form = {
                "grant_type": "client_credentials",
                "client_id": "demo-his",
                "client_secret": "x",
                name: value,
            }
            content = str(httpx.QueryParams(form)).encode()
            await check.send(f"{name} = {label}", content=content, content_type=op.media_type)
    await check.send("sent as JSON", content=b'{"grant_type": "client_credentials"}', status=400)
    check.check()


@pytest.mark.parametrize("how", ["client_secret_post", "client_secret_basic"])
async def test_a_client_id_holding_nul_is_an_invalid_client(client: httpx.AsyncClient, how: str) -> None:
    """A client id no client can have is an unknown client, however it is sent: answered as one."""

    async def token(client_id: str) -> httpx.Response:
        form = {"grant_type": "client_credentials"}
        if how == "client_secret_post":
            return await client.post(
                "/oauth/token", data={**form, "client_id": client_id, "client_secret": "x"}
            )
        return await client.post("/oauth/token", data=form, auth=(client_id, "x"))

    answer, unknown = await token("demo\u0000his"), await token("no-such-client")

    assert answer.json()["error"]["code"] == "INVALID_CLIENT"
    assert (answer.status_code, answer.json()) == (unknown.status_code, unknown.json())


BANK_KEY = Ed25519PrivateKey.generate()


@pytest.fixture
async def bank_key(callers: Callers) -> Ed25519PrivateKey:
    """A callback key of the seeded bank."""
    raw = BANK_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    await banks.add_key("demo-bank", "hostile", f"{webhooks.PUBLIC_PREFIX}{base64.b64encode(raw).decode()}")
    return BANK_KEY


CALLBACK = next(op for op in OPERATIONS if op.path == "/api/v1/callbacks/banks/{bank_code}")
BANK_URL = CALLBACK.path.format(bank_code="demo-bank")
EVENT = b'{"type": "drawdown.disbursed", "occurred_at": "2026-12-01T08:00:00+08:00", "data": %s}'
NESTED = b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (EVENT % NESTED, "BAD_REQUEST"),
        (EVENT % b'{"disbursement_ref": "D\\u0000"}', "CALLBACK_MALFORMED"),
        (b"[" + EVENT % b"{}" + b"]", "CALLBACK_MALFORMED"),
        (
            b'{"type": "' + b"x" * 10_000 + b'", "occurred_at": "2026-12-01T08:00:00Z", "data": {}}',
            "CALLBACK_MALFORMED",
        ),
        (b'{"type": 1, "occurred_at": "2026-12-01T08:00:00Z", "data": {}}', "CALLBACK_MALFORMED"),
        (b'{"type": "line.approved", "occurred_at": "yesterday", "data": {}}', "CALLBACK_MALFORMED"),
        (
            b'{"type": "line.approved", "occurred_at": "2026-12-01T08:00:00Z", "data": []}',
            "CALLBACK_MALFORMED",
        ),
        (EVENT[:-20], "CALLBACK_MALFORMED"),
        (b"\xff" + EVENT % b"{}", "CALLBACK_MALFORMED"),
    ],
    ids=[
        "nested 10,000 deep",
        "NUL",
        "not an object",
        "type 10 KB",
        "type a number",
        "not a time",
        "data a list",
        "truncated",
        "not UTF-8",
    ],
)
async def test_a_signed_callback_that_is_not_an_event_is_refused_unstored(
    refusals: Any, bank_key: Ed25519PrivateKey, body: bytes, code: str
) -> None:
    """Signed by the bank's own key, so past the signature check: what does not read as an event
    is refused with a 400 and stored nowhere (the inbox included)."""
    check = refusals(CALLBACK)
    signed = webhooks.sign_headers([bank_key], body)
    await check.send("signed", content=body, headers=signed, url=BANK_URL, status=400, code=code)
    check.check()


async def test_signed_events_holding_hostile_data_are_stored_then_flagged_never_applied(
    client: httpx.AsyncClient, callers: Callers, bank_key: Ed25519PrivateKey, run_worker: Any
) -> None:
    """An event that reads is acknowledged (the bank must not resend it); its data is the worker's
    to check: amounts beyond MAX_FEN or below zero, hidden characters in references, nesting, and
    references to nothing of ours are flagged for review, and no money moves."""
    events = [
        {
            "drawdown_id": str(uuid.uuid4()),
            "amount_fen": 10**30,
            "disbursement_ref": "D1",
            "disbursed_at": NOW,
        },
        {"drawdown_id": str(uuid.uuid4()), "amount_fen": -1, "disbursement_ref": "D2", "disbursed_at": NOW},
        {
            "drawdown_id": str(uuid.uuid4()),
            "amount_fen": 100,
            "disbursement_ref": "D\u202e3",
            "disbursed_at": NOW,
        },
        {"drawdown_id": "not a uuid", "amount_fen": 100, "disbursement_ref": "D4", "disbursed_at": NOW},
        {"nested": json.loads("[" * 500 + "]" * 500)},
        {"drawdown_id": str(uuid.uuid4()), "amount_fen": 100, "disbursement_ref": "D5", "disbursed_at": NOW},
    ]
    for data in events:
        body = json.dumps({"type": "drawdown.disbursed", "occurred_at": NOW, "data": data}).encode()
        answer = await client.post(
            "/api/v1/callbacks/banks/demo-bank", content=body, headers=webhooks.sign_headers([bank_key], body)
        )
        assert answer.status_code == 204, answer.text
    await run_worker()

    stored = await InboxEvent.select(InboxEvent.state, InboxEvent.outcome).order_by(InboxEvent.id)
    assert [row["state"] for row in stored] == ["flagged"] * len(events), stored
    unread = ["data does not read" in str(row["outcome"]) for row in stored]
    assert unread == [True] * (len(events) - 1) + [False], stored  # the last reads: no such drawdown
    assert await Journal.count() == 0
    problems, _ = await full_audit()
    assert problems == []


def test_every_value_a_bank_event_may_hold_is_bounded() -> None:
    """The events banks sign are checked by the worker against their types: amounts within
    0..MAX_FEN, strings bounded, references free of hidden characters. A `reason` is the bank's own
    words, kept as written (refusing the event over them would leave its money waiting): only NUL,
    which PostgreSQL cannot store, is refused there."""
    problems = []
    for kind, (shape, _) in sorted(BANK_EVENTS.items()):
        schema, defs = enforced(shape)
        for field in fields(schema, defs=defs):
            where = f"{kind} {field.name}"
            if field.kind == "integer":
                low, high = field.schema.get("minimum"), field.schema.get("maximum")
                if low is None or high is None or low < 0 or high > MAX_FEN:
                    problems.append(f"{where}: an amount outside 0..{MAX_FEN}")
            elif field.kind == "string" and "format" not in field.schema:
                valid = sample(field.schema)
                if "maxLength" not in field.schema:
                    problems.append(f"{where}: a string without a maximum length")
                if field.name == "reason":
                    if accepts(field.schema, tricked(valid, "\x00")):
                        problems.append(f"{where}: a reason that lets NUL through")
                    if not accepts(field.schema, " 额度不足\u200b，\u00ad请稍后 \n"):
                        problems.append(f"{where}: a reason refused for its blanks or invisible characters")
                elif let_through := [
                    k for k, c in HIDDEN.items() if accepts(field.schema, tricked(valid, c))
                ]:
                    problems.append(f"{where}: a string that lets {let_through} through")
    assert not problems, "\n".join(problems)


# -- identities --------------------------------------------------------------------------------

FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


async def insured_count() -> int:
    return await InsuredPerson.count()


async def test_an_id_number_in_full_width_digits_is_the_same_document(
    client: httpx.AsyncClient, sandbox_http: httpx.AsyncClient, settings: Settings, runtime: Runtime
) -> None:
    """Full-width digits (as some keyboards type them) are normalized to ASCII: one person, one
    digest. Typed so on another account, the document is recognised as the one bound already."""
    number = resident_id()
    first = await login(client, sandbox_http, settings, user=f"fw-{uuid.uuid4().hex[:8]}")
    second = await login(client, sandbox_http, settings, user=f"fw-{uuid.uuid4().hex[:8]}")

    bound = await bind_ecert(client, first, "测试全角", number.translate(FULL_WIDTH))
    again = await bind_ecert(client, second, "测试全角", f"\u3000{number.translate(FULL_WIDTH)} ")
    ascii_bound = await bind_ecert(client, second, "测试全角", number)

    assert bound.status_code == 200, bound.text
    assert bound.json()["identity"]["id_number"].endswith(number[-4:])  # masked, in ASCII
    assert (again.status_code, again.json()["error"]["code"]) == (409, "ECERT_ALREADY_BOUND")
    assert (ascii_bound.status_code, ascii_bound.json()["error"]["code"]) == (409, "ECERT_ALREADY_BOUND")
    (person,) = await InsuredPerson.select(InsuredPerson.id_digest)
    assert person["id_digest"] == runtime.vault.digest(people.identity_key("resident_id", number))


@pytest.mark.parametrize(
    "tricked",
    [
        lambda n: n[:6] + "\u200b" + n[6:],
        lambda n: n[:6] + "\u200d" + n[6:],
        lambda n: "\u202e" + n,
        lambda n: n + "\u0000",
        lambda n: n[:-1] + n[-1] + "\u0301",
        lambda n: n.replace("1", "١"),  # Arabic-Indic one: a digit, not ours
        lambda n: n[:9] + "\ufeff" + n[9:],
    ],
    ids=[
        "zero-width space",
        "zero-width joiner",
        "RTL override",
        "NUL",
        "combining mark",
        "Arabic digit",
        "BOM",
    ],
)
async def test_an_id_number_with_hidden_or_foreign_characters_is_refused_before_the_platform(
    client: httpx.AsyncClient,
    sandbox_http: httpx.AsyncClient,
    settings: Settings,
    callers: Callers,
    tricked: Any,
) -> None:
    """Never stored as sent, never matched to the person whose digits it holds: refused as the
    document's field, with nothing asked of the e-certificate platform and nothing written."""
    number = resident_id()
    owner = await login(client, sandbox_http, settings, user=f"id-{uuid.uuid4().hex[:8]}")
    assert (await bind_ecert(client, owner, "测试本人", number)).status_code == 200
    other = await login(client, sandbox_http, settings, user=f"id-{uuid.uuid4().hex[:8]}")
    await sandbox_http.delete("/_sandbox/calls")

    answer = await bind_ecert(client, other, "测试本人", tricked(number))
    relative = await client.post(
        "/api/v1/family/relatives",
        json={"relation": "PARENT", "name": "测试本人", "id_number": tricked(number)},
        headers=bearer(owner["access_token"]),
    )

    for refused in (answer, relative):
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
        assert refused.json()["error"]["detail"]["field"] == "id_number"
    assert await sandbox_calls(sandbox_http, "ecert", "verify_identity") == []
    assert await insured_count() == 1
    assert await EcertBinding.count() == 1


@pytest.mark.parametrize(
    "char", [*HIDDEN.values(), "\u200c", "\u2066", "\u00ad"], ids=[*HIDDEN, "ZWNJ", "LRI", "SHY"]
)
async def test_a_name_with_control_or_invisible_characters_is_refused(
    client: httpx.AsyncClient,
    sandbox_http: httpx.AsyncClient,
    settings: Settings,
    callers: Callers,
    char: str,
) -> None:
    """What a screen shows of a name must be all of it: control and format characters (zero-width,
    bidi overrides and isolates, soft hyphens) are refused in every name, before anyone is asked."""
    patient = await insured_patient(client, sandbox_http, settings)
    user = await login(client, sandbox_http, settings, user=f"name-{uuid.uuid4().hex[:8]}")
    await sandbox_http.delete("/_sandbox/calls")
    name = f"测试{char}张三"

    answers = [
        await bind_ecert(client, user, name, resident_id()),
        await client.post(
            "/api/v1/family/relatives",
            json={"relation": "CHILD", "name": name, "id_number": resident_id(born="20200101")},
            headers=patient.headers,
        ),
        await client.post(
            "/api/v1/family/newborns",
            json={"birth_certificate_no": "Q123456789", "name": name, "birth_date": date.today().isoformat()},
            headers=patient.headers,
        ),
    ]

    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert (answer.json()["error"]["code"], answer.json()["error"]["detail"]["field"]) == (
            "VALIDATION_ERROR",
            "name",
        )
    assert await sandbox_calls(sandbox_http, "ecert", "verify_identity") == []
    assert await insured_count() == 1


async def test_a_name_with_combining_marks_is_kept_as_typed(
    client: httpx.AsyncClient, sandbox_http: httpx.AsyncClient, settings: Settings, callers: Callers
) -> None:
    """Combining marks are part of names in several scripts: a name holding them binds (the
    platform compares it as typed) and is masked like any other."""
    user = await login(client, sandbox_http, settings, user=f"mark-{uuid.uuid4().hex[:8]}")

    bound = await bind_ecert(client, user, "测试Nguye\u0302\u0303n", resident_id())

    assert bound.status_code == 200, bound.text
    assert bound.json()["identity"]["name"].startswith("测")
