"""What the OpenAPI document says each operation answers: its real bodies, and the error
envelope for each 4xx it can give, so a generated client or a fuzzer can trust it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.enums import RequestEncodingType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.types import DataContainerType
from litestar.typing import FieldDefinition
from msgspec import Meta

from backend.platform.schemas import Wire

PATIENT, PARTNER, CLIENT, BANK_SIGNATURE = "patient", "partner", "client", "bankSignature"
SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    PATIENT: SecurityScheme(
        type="http", scheme="bearer", bearer_format="JWT", description="A patient's access token (login)."
    ),
    PARTNER: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="A partner's access token (`/oauth/token`); the operation names the scope it needs.",
    ),
    CLIENT: SecurityScheme(
        type="http",
        scheme="basic",
        description="A partner's `client_id` and `client_secret` (or both in the form instead).",
    ),
    BANK_SIGNATURE: SecurityScheme(
        type="apiKey",
        name="webhook-signature",
        security_scheme_in="header",
        description=(
            "Standard Webhooks `v1a`: ed25519 signatures by the bank's registered keys over "
            "`webhook-id.webhook-timestamp.body` (with the `webhook-id` and `webhook-timestamp` headers)."
        ),
    ),
}

# What each status means here; an operation may say more (the codes it answers).
MEANING = {
    400: "The request is malformed or a field is invalid (`VALIDATION_ERROR` names it in `detail.field`).",
    401: "No valid access token (`UNAUTHORIZED`, `TOKEN_INVALID`).",
    403: "The token lacks the scope this operation needs (`INSUFFICIENT_SCOPE`).",
    404: "No such object, or not yours to see.",
    409: "The object's state does not allow this now.",
    410: "Gone: it has expired.",
    415: "The body is not sent as `application/json` (`UNSUPPORTED_MEDIA_TYPE`).",
    422: "Well-formed, but refused: `code` says why.",
    429: "Too many attempts: wait and try again.",
    502: "A partner platform refused our request or answered what we cannot trust.",
    503: "Busy or unreachable (a partner platform, or a collision with another request): retry.",
}


class ErrorBody(Wire, omit_defaults=False):
    code: Annotated[
        str, Meta(description="A stable machine code, e.g. `VALIDATION_ERROR`, `BILL_NOT_FOUND`.")
    ]
    message: Annotated[str, Meta(description="For people; the wording may change.")]
    detail: Annotated[
        dict[str, Any], Meta(description="Particulars: the failing `field`, a partner's code, ...")
    ]


class Error(Wire, omit_defaults=False):
    """The one shape of every error this API answers."""

    error: ErrorBody


def patient_token() -> list[SecurityRequirement]:
    return [{PATIENT: []}]


def partner_token(scope: str | None = None) -> list[SecurityRequirement]:
    """OpenAPI 3.1 lets a bearer requirement name roles: here, the scope the token must hold."""
    return [{PARTNER: [scope] if scope else []}]


def returns(data_container: DataContainerType, description: str) -> ResponseSpec:
    """A success answer whose body the handler's return type does not show (a pre-encoded replay)."""
    return ResponseSpec(data_container, description=description, generate_examples=False)


def errors(*answers: int | tuple[int, str]) -> dict[int, ResponseSpec]:
    """The error envelope under each status, described by `MEANING` or by the texts given with it
    (several for one status are joined)."""
    described: dict[int, list[str]] = {}
    for answer in answers:
        status, description = answer if isinstance(answer, tuple) else (answer, MEANING[answer])
        described.setdefault(status, []).append(description)
    return {
        status: ResponseSpec(Error, description=" ".join(texts), generate_examples=False)
        for status, texts in described.items()
    }


def pictures(*media_types: str) -> type[Operation]:
    """An `operation_class` for a handler whose 200 may also be a picture in each of `media_types`
    (a `format` parameter chooses): Litestar documents one media type per status."""

    @dataclass
    class WithPictures(Operation):
        def __post_init__(self) -> None:
            ok = (self.responses or {}).get("200")
            assert isinstance(ok, OpenAPIResponse)
            pictures = {m: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)) for m in media_types}
            ok.content = {**(ok.content or {}), **pictures}

    return WithPictures


class StrictStructs(StructSchemaPlugin):
    """Structs that refuse unknown fields (every `Wire` type) say `additionalProperties: false`:
    Litestar's own plugin leaves it out, so the document would allow what we answer 400 to.
    (Litestar has no public hook for this; the test of the document notices if this one breaks.)"""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


def _media_type(body: FieldDefinition) -> str:
    return getattr(body.kwarg_definition, "media_type", RequestEncodingType.JSON)


class ErrorAnswers(ReceiveRoutePlugin):
    """Declares the errors an operation gets from its layers rather than its own code: 400 when it
    takes input (Litestar would document its own error shape there), 415 when its body is JSON,
    401 when it needs a token, 403 when the token must hold a scope. What a handler declares
    itself wins."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler, kwargs in route.route_handler_map.values():
            common: list[int] = []
            body = handler.parsed_fn_signature.parameters.get("data")
            if body is not None or any(
                (
                    kwargs.expected_path_params,
                    kwargs.expected_query_params,
                    kwargs.expected_header_params,
                    kwargs.expected_cookie_params,
                )
            ):
                common.append(400)
            if body is not None and _media_type(body) == RequestEncodingType.JSON:
                common.append(415)  # see platform/bodies.py
            requirements = handler.resolve_security()
            if requirements:
                common.append(401)
            if any(scopes for requirement in requirements for scopes in requirement.values()):
                common.append(403)
            handler.responses = {**errors(*common), **(handler.responses or {})}
