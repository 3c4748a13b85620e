"""multipart/form-data requests: the parsed form as fields a pydantic model validates.

Form values are text, so form models coerce ("2" -> 2, "true" -> True) where the JSON
models are strict. A file part becomes an UploadFile; a name sent several times or as
`name[]` becomes a list under `name`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from edge.errors import ApiError
from edge.openai.errors import ErrorType
from edge.openai.validation import validation_error
from services.common.multipart import Form, MultipartError, Part, parse_form

_LIST_SUFFIX = "[]"
M = TypeVar("M", bound="FormModel")


@dataclass(frozen=True, slots=True)
class UploadFile:
    """One uploaded file of a form."""

    filename: str
    content_type: str
    data: bytes


class FormModel(BaseModel):
    """The base of every multipart request model: lax types, unknown fields kept."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)


def form_fields(form: Form) -> dict[str, Any]:
    """The form's parts by name: text, UploadFile, or a list of them when repeated."""
    fields: dict[str, Any] = {}
    listed: set[str] = set()
    for part in form.parts:
        name = part.name.removesuffix(_LIST_SUFFIX)
        value = _value(part)
        if name in fields:
            if name not in listed:
                fields[name] = [fields[name]]
                listed.add(name)
            fields[name].append(value)
        elif part.name.endswith(_LIST_SUFFIX):
            fields[name] = [value]
            listed.add(name)
        else:
            fields[name] = value
    return fields


def _value(part: Part) -> str | UploadFile:
    if part.filename is None:
        return part.text
    return UploadFile(part.filename, part.content_type, part.data)


def read_form(body: bytes, content_type: str) -> Form:
    """The parts of a multipart body, or ApiError 400 when it is malformed."""
    try:
        return parse_form(body, content_type)
    except MultipartError as exc:
        raise ApiError(
            400, ErrorType.INVALID_REQUEST, f"The multipart/form-data body is malformed: {exc}."
        ) from None


def validate_form(model: type[M], form: Form) -> M:
    """The validated form, or ApiError 400 naming the `param` at fault."""
    fields = form_fields(form)
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False), fields) from None


def form_digest(form: Form) -> bytes:
    """What identifies a form regardless of its boundary (for Idempotency-Key).

    A client retrying a multipart request builds it again with a new random boundary,
    so the raw bytes differ while the request is the same.
    """
    digest = hashlib.sha256()
    for part in form.parts:
        for text in (part.name, part.filename or "", part.content_type):
            digest.update(text.encode())
            digest.update(b"\0")
        digest.update(hashlib.sha256(part.data).digest())
    return digest.digest()
