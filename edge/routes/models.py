"""`GET /v1/models` and `GET /v1/models/{model}`: the models the caller's key may use."""

from __future__ import annotations

from aiohttp import web

from edge.errors import ApiError
from edge.keys import CATALOG, PRINCIPAL
from edge.openai.errors import ErrorCode, ErrorType
from edge.openai.models import ModelList, ModelObject

routes = web.RouteTableDef()


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    """Every catalog model the key may use."""
    principal = request[PRINCIPAL]
    models = await request.app[CATALOG].list()
    listing = ModelList(data=[ModelObject.of(m) for m in models if principal.may_use(m.id)])
    return web.Response(body=listing.model_dump_json(), content_type="application/json")


@routes.get("/v1/models/{model:.+}")
async def retrieve_model(request: web.Request) -> web.Response:
    """One model; 404 if unknown or not usable with this key."""
    model_id = request.match_info["model"]
    model = await request.app[CATALOG].get(model_id)
    if model is None or not request[PRINCIPAL].may_use(model_id):
        raise ApiError(
            404, ErrorType.INVALID_REQUEST, f"The model '{model_id}' does not exist.",
            code=ErrorCode.MODEL_NOT_FOUND, param="model",
        )
    body = ModelObject.of(model).model_dump_json()
    return web.Response(body=body, content_type="application/json")
