"""Request bodies: parsed once with orjson, validated with pydantic, errors as OpenAI 400s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edge.errors import ApiError
from edge.openai.errors import ErrorCode, ErrorType

M = TypeVar("M", bound=BaseModel)

_TAG_ERRORS = frozenset({"union_tag_not_found", "union_tag_invalid"})


def parse_body(model: type[M], body: bytes) -> M:
    """The validated request, or ApiError 400 invalid_request_error naming the `param`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(
            400, ErrorType.INVALID_REQUEST,
            "We could not parse the JSON body of your request. Send valid JSON.",
            code=ErrorCode.INVALID_JSON,
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, ErrorType.INVALID_REQUEST, "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False), data) from None


def validation_error(errors: Sequence[ErrorDetails], data: Any) -> ApiError:
    """A 400 for the most specific pydantic error, with `param` as a dotted path.

    A value failing a union (content as a string or a list of parts) yields one error
    per member; the deepest path is the one that says what is actually wrong.
    """
    paths = [param_path(error, data) for error in errors]
    best = max(range(len(errors)), key=lambda i: (paths[i].count(".") + bool(paths[i]), -i))
    error, param = errors[best], paths[best]
    if error["type"] == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        detail = error["msg"].removeprefix("Value error, ").rstrip(".")
        message = f"Invalid value for '{param}': {detail}."
    return ApiError(400, ErrorType.INVALID_REQUEST, message, param=param or None)


def param_path(error: ErrorDetails, data: Any) -> str:
    """The dotted path of the input at fault ("messages.0.role"), without union tags.

    Pydantic puts union member tags ("user", "str", "list[...]") in `loc`; walking the
    input alongside keeps only the steps that exist in the client's JSON (plus the final
    name of a missing field).
    """
    loc = error["loc"]
    parts: list[str] = []
    node = data
    for i, step in enumerate(loc):
        found, child = _child(node, step)
        if found:
            node = child
        elif not (error["type"] == "missing" and i == len(loc) - 1):
            continue
        parts.append(str(step))
    if error["type"] in _TAG_ERRORS:
        discriminator = str((error.get("ctx") or {}).get("discriminator", "")).strip("'\"")
        if discriminator:
            parts.append(discriminator)
    return ".".join(parts)


def _child(node: Any, step: str | int) -> tuple[bool, Any]:
    if isinstance(node, dict) and isinstance(step, str) and step in node:
        return True, node[step]
    if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        return True, node[step]
    return False, None
