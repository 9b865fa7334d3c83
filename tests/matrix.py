"""The machinery of the authorization matrices (tests/credit/test_matrix.py, tests/family/test_matrix.py):
operations that name someone's object, called by each actor around the people whose objects they
are; those not let in must get 404 and nothing of theirs, and change nothing.

A matrix is its tables (`Names`, `Own`), a `World` (the actors, the objects' ids, what of them is
secret and who may know it) and a `Matrix` that calls every cell and gathers the problems.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from litestar import Litestar

from backend.ecert.tables import QrCode
from tests.billing.factories import Insured

Client = httpx.AsyncClient


@dataclass(frozen=True)
class Names:
    """An operation naming an object; `allowed` get in, everyone else 404. The operation's
    "{placeholders}" are the objects of `of` (the world's owner unless said)."""

    operation: str  # "METHOD /path" as the OpenAPI document has it
    allowed: frozenset[str]
    body: dict[str, Any] | None = None
    of: str = "owner"


@dataclass(frozen=True)
class Own:
    """The caller's own list or singleton: it shows `shows` of the owner's to the owner and to an
    actor who may see them, nothing of theirs to anyone else."""

    operation: str
    shows: tuple[str, ...] = ()
    body: dict[str, Any] | None = None
    last: bool = False  # changes the caller's own state: called once everything else is done


def patient_operations(app: Litestar) -> set[str]:
    """Every operation of the published document that a patient's token opens."""
    document = app.openapi_schema.to_schema()
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
        and any("patient" in requirement for requirement in operation.get("security") or [])
    }


def fill(value: Any, ids: dict[str, Any]) -> Any:
    """A body's "{name}" is the object of that name."""
    return ids[value[1:-1]] if isinstance(value, str) and value.startswith("{") else value


# Objects that do not exist: someone else's must be refused just as these are, or refusals tell.
GHOSTS = {
    "bill_id": str(uuid.uuid4()),
    "appointment_id": str(uuid.uuid4()),
    "notification_id": 2**31 - 1,
    "entry_id": 2**31 - 1,
    "link_id": 2**31 - 1,
    "drawdown_id": str(uuid.uuid4()),
}


def body_of(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:  # a picture, or no content
        return answer.text


def ids_in(body: Any) -> set[Any]:
    """Every `id` in a JSON answer, however deep."""
    if isinstance(body, list):
        return set().union(*(ids_in(item) for item in body))
    if isinstance(body, dict):
        found = {body["id"]} if "id" in body else set()
        return found.union(*(ids_in(value) for value in body.values()))
    return set()


# What the owner sees of their things (and of those in their care).
OWNER_VIEWS = (
    "GET /api/v1/bills/{bill_id}",
    "GET /api/v1/bills",
    "GET /api/v1/appointments",
    "GET /api/v1/waitlist",
    "GET /api/v1/notifications",
    "GET /api/v1/family",
    "GET /api/v1/credit",
    "GET /api/v1/ecert",
)


@dataclass
class World:
    """The owner's objects, the actors around them, and what of the owner's only some may see."""

    client: Client
    actors: dict[str, Insured]
    ids: dict[str, Any]  # the placeholders in operations and bodies: the owner's objects
    secrets: dict[str, str | int]  # strings are looked for anywhere; ids only where a row shows them
    # The secrets each actor may see; the owner all of them unless named here too.
    knows: dict[str, set[str]]
    others: dict[str, dict[str, Any]] = field(default_factory=dict)  # `Names.of` -> its objects
    views: tuple[str, ...] = OWNER_VIEWS

    async def call(
        self,
        operation: str,
        actor: str,
        body: dict[str, Any] | None = None,
        *,
        ghost: bool = False,
        of: str = "owner",
    ) -> httpx.Response:
        """Call as the actor, naming the objects of `of`, or with `ghost` objects that do not exist."""
        ids = {**self.ids, **self.others.get(of, {})}
        if ghost:
            ids = {**ids, **GHOSTS}
        method, template = operation.split(" ", 1)
        headers = self.actors[actor].headers
        if method != "GET":
            headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        filled = None if body is None else {k: fill(v, ids) for k, v in body.items()}
        return await self.client.request(method, template.format(**ids), json=filled, headers=headers)

    def seen(self, answer: httpx.Response, secret: str) -> bool:
        value = self.secrets[secret]
        if isinstance(value, str):
            return value in answer.text
        return value in ids_in(body_of(answer))

    async def views_of_the_owner(self) -> dict[str, Any]:
        """What the owner sees of their things: whatever others are refused must leave it as it was."""
        views: dict[str, Any] = {}
        for view in self.views:
            answer = await self.call(view, "owner")
            views[view] = (answer.status_code, answer.json())
        views["codes issued under a link"] = await QrCode.count().where(QrCode.link_id.is_not_null())
        return views


def refusal_problems(world: World, answer: httpx.Response, ghost: httpx.Response) -> list[str]:
    """A refusal is 404 with the error envelope only, none of the owner's strings, and the same as
    for an object that does not exist."""
    problems = []
    if (answer.status_code, body_of(answer)) != (ghost.status_code, body_of(ghost)):
        problems.append(
            f"unlike a missing one's ({ghost.status_code} {ghost.text[:200]}): {answer.text[:200]}"
        )
    if answer.status_code != 404:
        problems.append(f"answered {answer.status_code}, not 404: {answer.text[:300]}")
    elif (
        not isinstance(body := body_of(answer), dict)
        or set(body) != {"error"}
        or (set(body["error"]) - {"code", "message", "detail"})
    ):
        problems.append(f"404 with more than the error envelope: {answer.text[:300]}")
    problems += [
        f"shows the owner's {s}"
        for s, v in world.secrets.items()
        if isinstance(v, str) and world.seen(answer, s)
    ]
    return problems


def let_in(operation: str, answer: httpx.Response) -> bool:
    """Reads answer 200; a change may also be refused on its merits (403, 409, 422), never as not found."""
    if operation.startswith("GET "):
        return answer.status_code == 200
    return 200 <= answer.status_code < 300 or answer.status_code in (403, 409, 422)


def own_problems(world: World, row: Own, actor: str, answer: httpx.Response) -> list[str]:
    if not 200 <= answer.status_code < 300:
        return [f"answered {answer.status_code}: {answer.text[:300]}"]
    problems = []
    for secret, value in world.secrets.items():
        if isinstance(value, int) and secret not in row.shows:
            continue  # small ids of other tables are no one's secret here
        may = secret in world.knows[actor] if actor in world.knows else actor == "owner"
        present = world.seen(answer, secret)
        if may and secret in row.shows and not present:
            problems.append(f"does not show the owner's {secret}")
        elif present and not may:
            problems.append(f"shows the owner's {secret}")
    return problems


class Matrix:
    """The cells called so far, and every problem found, reported together at the end."""

    def __init__(self, world: World, names: list[Names]) -> None:
        self.world = world
        self.names = names
        self.cells = 0
        self.problems: list[str] = []

    def note(self, operation: str, actor: str, answer: httpx.Response, found: list[str]) -> None:
        self.cells += 1
        self.problems.extend(f"{operation} as {actor} ({answer.status_code}): {p}" for p in found)

    async def unchanged_for_the_owner(self, what: str, calls: Any) -> None:
        before = await self.world.views_of_the_owner()
        await calls
        after = await self.world.views_of_the_owner()
        self.problems += [
            f"{what} changed what the owner sees at {view}: {before[view]} -> {after[view]}"
            for view in before
            if before[view] != after[view]
        ]

    def refused(self, row: Names) -> list[str]:
        return [actor for actor in self.world.actors if actor not in row.allowed]

    async def refusals(self) -> None:
        for row in self.names:
            for actor in self.refused(row):
                answer = await self.world.call(row.operation, actor, row.body, of=row.of)
                ghost = await self.world.call(row.operation, actor, row.body, ghost=True, of=row.of)
                where = row.operation if row.of == "owner" else f"{row.operation} (the {row.of}'s)"
                self.note(where, actor, answer, refusal_problems(self.world, answer, ghost))

    async def own(self, rows: list[Own], actors: tuple[str, ...]) -> None:
        for row in rows:
            for actor in actors:
                answer = await self.world.call(row.operation, actor, row.body)
                self.note(row.operation, actor, answer, own_problems(self.world, row, actor, answer))

    async def let_in(self) -> None:
        for row in self.names:
            for actor in (a for a in self.world.actors if a in row.allowed):
                answer = await self.world.call(row.operation, actor, row.body, of=row.of)
                found = [] if let_in(row.operation, answer) else [f"not let in: {answer.text[:300]}"]
                where = row.operation if row.of == "owner" else f"{row.operation} (the {row.of}'s)"
                self.note(where, actor, answer, found)
