"""docs/errors.md lists every error code the backend can answer, and only those.

The codes are collected from the source with `ast`: errors raised (`code=` or the class's own),
envelopes answered, and the OAuth2 errors authlib raises on the client-credentials path. A code
computed in a way the collector cannot follow fails the test until it is taught where it comes from.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import authlib
from authlib.oauth2.rfc6749 import errors as oauth_errors

from backend.billing.bills import MAX_TOTAL_FEN
from backend.partners.ecert import REFUSALS
from backend.platform.errors import HTTP_CODES
from tests.helpers import Client
from tests.servers import ROOT

DOC = ROOT / "docs" / "errors.md"
CODE = re.compile(r"[A-Z][A-Z0-9_]+\Z")
# Code expressions the collector cannot evaluate, and where their codes are collected instead.
EXPLAINED = {
    ("backend/platform/errors.py", "exc.code"): "an AppError's own code, collected where it is raised",
    ("backend/oauth/routes.py", "oauth_error.upper()"): "OAuth2 error names: see oauth_codes()",
}
# authlib's functions on the way of a client-credentials token request (AuthorizationServer.
# create_token_response -> the grant -> client authentication), by file.
AUTHLIB_TOKEN_PATH = {
    "oauth2/rfc6749/authorization_server.py": {
        "create_token_response",
        "get_token_grant",
        "authenticate_client",
        "validate_requested_scope",
    },
    "oauth2/rfc6749/grants/base.py": {"authenticate_token_endpoint_client", "validate_requested_scope"},
    "oauth2/rfc6749/grants/client_credentials.py": {"validate_token_request", "create_token_response"},
    "oauth2/rfc6749/authenticate_client.py": {
        "authenticate",
        "authenticate_client_secret_basic",
        "authenticate_client_secret_post",
        "_validate_client",
    },
}


@dataclass
class Collected:
    statuses: dict[str, set[int]] = field(default_factory=dict)  # code -> the statuses the source states
    dynamic: set[tuple[str, str]] = field(default_factory=set)  # (file, expression) not evaluated

    def add(self, codes: set[str], status: int | None) -> None:
        for code in codes:
            self.statuses.setdefault(code, set()).update({status} if status is not None else set())


def backend_modules() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(ROOT)): ast.parse(path.read_text())
        for path in sorted((ROOT / "backend").rglob("*.py"))
        if "piccolo_migrations" not in path.parts
    }


def error_classes(modules: dict[str, ast.Module]) -> dict[str, tuple[str | None, int | None]]:
    """AppError and its subclasses, anywhere in the backend: name -> (default code, default status)."""
    defined = {
        node.name: node
        for tree in modules.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    classes: dict[str, tuple[str | None, int | None]] = {}

    def own(node: ast.ClassDef, attribute: str) -> object:
        for statement in node.body:
            if not isinstance(statement, ast.Assign) or not isinstance(statement.value, ast.Constant):
                continue
            if [ast.unparse(target) for target in statement.targets] == [attribute]:
                return statement.value.value
        return None

    def resolve(name: str) -> tuple[str | None, int | None] | None:
        if name in classes:
            return classes[name]
        node = defined.get(name)
        if node is None:
            return None
        bases = [resolve(base.id) for base in node.bases if isinstance(base, ast.Name)]
        inherited = next((base for base in bases if base is not None), None)
        if inherited is None and name != "AppError":
            return None
        code, status = own(node, "code"), own(node, "status_code")
        classes[name] = (
            code if isinstance(code, str) else (inherited or (None, None))[0],
            status if isinstance(status, int) else (inherited or (None, None))[1],
        )
        return classes[name]

    for name in defined:
        resolve(name)
    return classes


def module_dicts(tree: ast.Module) -> dict[str, ast.Dict]:
    """Module-level dict literals by name (`HTTP_CODES`, `REFUSALS`)."""
    found = {}
    for statement in tree.body:
        target = statement.target if isinstance(statement, ast.AnnAssign) else None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
        if isinstance(target, ast.Name) and isinstance(statement.value, ast.Dict):
            found[target.id] = statement.value
    return found


def strings(
    expr: ast.expr, scope: ast.AST, dicts: dict[str, ast.Dict], index: int | None = None
) -> set[str] | None:
    """The codes `expr` can evaluate to (element `index` of a tuple), or None when it cannot be told."""
    if index is None and isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if index is None and isinstance(expr, ast.IfExp):
        body, orelse = strings(expr.body, scope, dicts), strings(expr.orelse, scope, dicts)
        return None if body is None or orelse is None else body | orelse
    # D[key], D.get(key[, default]) of a module-level dict: any of its values.
    lookup = expr.value if isinstance(expr, ast.Subscript) else None
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "get":
        lookup = expr.func.value
    if isinstance(lookup, ast.Name) and lookup.id in dicts:
        values = dicts[lookup.id].values
        if index is not None:
            values = [v.elts[index] for v in values if isinstance(v, ast.Tuple)]
        found = {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)}
        if isinstance(expr, ast.Call) and len(expr.args) == 2:
            default = strings(expr.args[1], scope, dicts)
            return None if default is None else found | default
        return found
    if index is None and isinstance(expr, ast.Name):
        # What the enclosing function assigns to the name: `code = ...`, `_, code, _ = ...`.
        assigned: set[str] = set()
        for node in ast.walk(scope):
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id == expr.id:
                value = strings(node.value, scope, dicts)
            elif isinstance(target, ast.Tuple) and expr.id in [ast.unparse(e) for e in target.elts]:
                value = strings(
                    node.value, scope, dicts, [ast.unparse(e) for e in target.elts].index(expr.id)
                )
            else:
                continue
            if value is None:
                return None
            assigned |= value
        return assigned or None
    return None


def calls(tree: ast.Module) -> Iterator[tuple[ast.Call, ast.AST]]:
    """Every call, with the function it is in (the module for top-level code)."""
    scopes: list[ast.AST] = [tree]
    scopes += [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    seen: set[int] = set()
    for scope in reversed(scopes):  # innermost first: a call belongs to its own function
        for node in ast.walk(scope):
            if isinstance(node, ast.Call) and id(node) not in seen:
                seen.add(id(node))
                yield node, scope


def raised_codes() -> Collected:
    modules = backend_modules()
    classes = error_classes(modules)
    found = Collected()
    for path, tree in modules.items():
        dicts = module_dicts(tree)
        for call, scope in calls(tree):
            name = ast.unparse(call.func).rpartition(".")[2]
            keywords = {k.arg: k.value for k in call.keywords}
            if name in classes:
                default_code, default_status = classes[name]
                code_expr, status_expr = keywords.get("code"), keywords.get("status_code")
            elif name == "envelope":
                code_expr, status_expr, default_code, default_status = call.args[1], call.args[0], None, None
            else:
                continue
            if None in keywords:  # **kwargs: the code could be anything
                found.dynamic.add((path, ast.unparse(call)))
                continue
            codes = {default_code} if code_expr is None and default_code else None
            if code_expr is not None:
                codes = strings(code_expr, scope, dicts)
            if codes is None:
                found.dynamic.add((path, ast.unparse(code_expr) if code_expr else ast.unparse(call)))
                continue
            status = default_status
            if status_expr is not None:
                status = status_expr.value if isinstance(status_expr, ast.Constant) else None
            found.add(codes, status if isinstance(status, int) else None)
    return found


def oauth_codes() -> set[str]:
    """`POST /oauth/token` answers authlib's OAuth2 error names, upper-cased (oauth/routes.py): those
    authlib raises on the client-credentials path, those our server raises, and our own answer for
    credentials that are not UTF-8 (oauth/service.py)."""
    names: set[str] = set()
    package = Path(authlib.__file__).parent
    functions = []
    for path, wanted in AUTHLIB_TOKEN_PATH.items():
        tree = ast.parse((package / path).read_text())
        defs = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert wanted <= set(defs), (
            f"authlib moved {wanted - set(defs)} out of {path}: update AUTHLIB_TOKEN_PATH"
        )
        functions += [defs[name] for name in wanted]
    for path in ("backend/oauth/server.py", "backend/oauth/service.py"):
        functions.append(ast.parse((ROOT / path).read_text()))
        for node in ast.walk(functions[-1]):  # {"error": "invalid_client"} answered directly
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "error"
                        and isinstance(value, ast.Constant)
                    ):
                        names.add(str(value.value))
    for function in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.Raise) and node.exc is not None:
                raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                error = getattr(oauth_errors, getattr(raised, "id", ""), None)
                if isinstance(error, type) and issubclass(error, oauth_errors.OAuth2Error) and error.error:
                    names.add(error.error)
    return {name.upper() for name in names}


def all_codes() -> dict[str, set[int]]:
    found = raised_codes()
    codes = dict(found.statuses)
    for code in oauth_codes():
        codes.setdefault(code, set())
    return codes


def documented() -> dict[str, set[int]]:
    """Each table row `| `CODE` | statuses | where | what to do |` of docs/errors.md."""
    rows: dict[str, set[int]] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `([A-Z][A-Z0-9_]+)` \| ([^|]*) \|([^|]*)\|([^|]*)\|$", line)
        if match:
            code, statuses, where, todo = match.groups()
            assert code not in rows, f"{code} is documented twice"
            assert where.strip() and todo.strip(), f"{code}: say where it comes from and what to do"
            rows[code] = {int(s) for s in re.findall(r"\b[1-5]\d\d\b", statuses)}
    return rows


def test_the_collector_finds_the_codes_of_every_source() -> None:
    codes = all_codes()
    for code in (
        "ECERT_USER_ALREADY_BOUND",  # code="..." on Conflict
        "BILL_NOT_FOUND",  # on NotFound, and on AppError with status_code=404
        "NOTIFICATION_NOT_FOUND",
        "PARTNER_REJECTED",  # in a factory function
        "UNAUTHORIZED",  # a class's own code (bearer_token raises Unauthorized without one)
        "PARTNER_UNAVAILABLE",
        "ECERT_NAME_MISMATCH",  # from the REFUSALS table, through a tuple unpacking
        "VALIDATION_ERROR",  # envelope literals
        "INTERNAL_ERROR",
        "TRY_AGAIN",
        "NOT_READY",
        "METHOD_NOT_ALLOWED",  # HTTP_CODES values
        "PAYLOAD_TOO_LARGE",
        "SERVICE_UNAVAILABLE",  # HTTP_CODES' fallback
        "INVALID_CLIENT",  # OAuth2, from authlib and from oauth/service.py
        "INVALID_SCOPE",
        "UNSUPPORTED_GRANT_TYPE",
    ):
        assert code in codes, code
    assert all(CODE.match(code) for code in codes), sorted(codes)
    assert len(codes) > 60
    assert codes["BILL_NOT_FOUND"] == {404}
    assert codes["ECERT_BIND_RATE_LIMITED"] == {429}
    assert codes["VALIDATION_ERROR"] == {400, 422}


def test_every_code_the_collector_cannot_follow_is_explained() -> None:
    assert raised_codes().dynamic == set(EXPLAINED)


def test_every_code_answered_is_documented() -> None:
    missing = set(all_codes()) - set(documented())
    assert not missing, f"add to docs/errors.md: {sorted(missing)}"


def test_every_code_documented_is_answered() -> None:
    stale = set(documented()) - set(all_codes())
    assert not stale, f"docs/errors.md names codes nothing answers: {sorted(stale)}"


def test_the_documented_statuses_are_those_answered() -> None:
    """Where the source states the status (a literal, or the error class's own), the row has it."""
    docs = documented()
    answered = all_codes().items()
    wrong = {
        code: (found, docs[code]) for code, found in answered if code in docs and not found <= docs[code]
    }
    assert not wrong, f"answered vs documented statuses: {wrong}"


def test_the_statuses_of_the_code_tables_are_documented() -> None:
    """HTTP_CODES and the platform's REFUSALS pair each code with its status, as data."""
    docs = documented()
    for status, code in HTTP_CODES.items():
        assert status in docs.get(code, set()), code
    for status, code, *_ in REFUSALS.values():
        assert status in docs.get(code, set()), code


def test_the_readme_links_the_list() -> None:
    assert "(docs/errors.md)" in (ROOT / "README.md").read_text()


async def test_the_limits_are_documented(client: Client) -> None:
    text = DOC.read_text()
    assert f"`MAX_TOTAL_FEN`) | {MAX_TOTAL_FEN:,} fen" in text
    schema = (await client.get("/schema/openapi.json")).json()
    limits = [
        (path, parameter["schema"])
        for path, operations in schema["paths"].items()
        for parameter in operations.get("get", {}).get("parameters", [])
        if parameter["name"] == "limit"
    ]
    assert len(limits) >= 2
    for path, bounds in limits:
        row = next(line for line in text.splitlines() if line.startswith(f"| `GET {path}` `limit` |"))
        low, high, default = (int(bounds[k]) for k in ("minimum", "maximum", "default"))
        assert f"{low}–{high}, default {default}" in row
