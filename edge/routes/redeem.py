"""`POST /apirelay/v1/redeem`: a key's owner redeems a one-time code onto the account.

Outside `/v1` (it is apirelay's, not OpenAI's), so the route authenticates the key
itself. Billing answers NOT_FOUND for an unknown code and FAILED_PRECONDITION for one
redeemed already (by any account) or expired; the client sees 404 / 409 with a code
naming which, in the OpenAI error envelope.
"""

from __future__ import annotations

from typing import Literal

import grpc
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from edge.body import read_body, require_json
from edge.errors import ApiError, UpstreamError, from_upstream
from edge.keys import AUTHENTICATOR, CLIENTS, REQUEST_ID
from edge.openai.errors import ErrorType
from edge.openai.validation import parse_body
from services.common.money import nanos_to_usd

routes = web.RouteTableDef()

MAX_BODY_BYTES = 4096  # {"code": "rc-..."} needs far less
CODE_NOT_FOUND = "redemption_code_not_found"
CODE_USED = "redemption_code_used"
CODE_EXPIRED = "redemption_code_expired"


class RedeemRequest(BaseModel):
    """The body: the code as printed."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=256)


class RedemptionObject(BaseModel):
    """The answer: what was credited and the balance after it, exact USD."""

    object: Literal["redemption"] = "redemption"
    credited_usd: str
    balance_usd: str


@routes.post("/apirelay/v1/redeem")
async def redeem(request: web.Request) -> web.Response:
    """Credit the key's account with a redemption code's amount (once per code)."""
    app, request_id = request.app, request[REQUEST_ID]
    principal = await app[AUTHENTICATOR].authenticate(
        request.headers.get("Authorization"), request_id
    )
    require_json(request)
    body = parse_body(RedeemRequest, await read_body(request, MAX_BODY_BYTES))
    try:
        done = await app[CLIENTS].billing.redeem(principal.account_id, body.code, request_id)
    except UpstreamError as exc:
        raise _refused(exc) from None
    answer = RedemptionObject(credited_usd=nanos_to_usd(done.credited_nanos),
                              balance_usd=nanos_to_usd(done.balance_nanos))
    return web.Response(body=answer.model_dump_json(), content_type="application/json")


def _refused(exc: UpstreamError) -> ApiError:
    if exc.code is grpc.StatusCode.NOT_FOUND:
        return ApiError(404, ErrorType.NOT_FOUND, "No such redemption code.",
                        code=CODE_NOT_FOUND, param="code")
    if exc.code is grpc.StatusCode.FAILED_PRECONDITION:
        expired = "expired" in exc.details.lower()
        message = ("This redemption code has expired." if expired
                   else "This redemption code was redeemed already.")
        return ApiError(409, ErrorType.CONFLICT, message,
                        code=CODE_EXPIRED if expired else CODE_USED, param="code")
    return from_upstream(exc)
