"""multipart/form-data bodies (RFC 7578) read from bytes, and one field replaced in place.

The edge validates a multipart request from the bytes it already holds, and the router
rewrites the `model` field for a channel that maps model ids; neither needs a streaming
parser, and both must leave every other byte of the body as the client sent it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'\bfilename="([^"]*)"', re.IGNORECASE)
_CONTENT_TYPE = re.compile(rb"^content-type:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


class MultipartError(ValueError):
    """The body is not valid multipart/form-data."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part: its field name, filename (None for a plain field), type and bytes."""

    name: str
    filename: str | None
    content_type: str
    data: bytes
    start: int  # offset of the part's data in the body
    end: int

    @property
    def text(self) -> str:
        """The part's data as UTF-8 text (invalid bytes replaced)."""
        return self.data.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Form:
    """The parts of a form in order, and the first part of each name."""

    parts: tuple[Part, ...]
    by_name: Mapping[str, Part]

    def field(self, name: str) -> str | None:
        """The text of the plain field `name`, or None when absent."""
        part = self.by_name.get(name)
        return None if part is None or part.filename is not None else part.text

    def file(self, name: str) -> Part | None:
        """The file part `name`, or None when absent or not a file."""
        part = self.by_name.get(name)
        return part if part is not None and part.filename is not None else None

    def values(self, name: str) -> list[str]:
        """The texts of every plain field named `name` (for `name[]` style lists)."""
        return [p.text for p in self.parts if p.name == name and p.filename is None]


def boundary_of(content_type: str) -> bytes:
    """The boundary of a multipart/form-data content type; MultipartError if none."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("the content type is not multipart/form-data")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise MultipartError("the multipart content type has no boundary")
    return (match.group(1) or match.group(2)).encode("latin-1")


def parse_form(body: bytes, content_type: str) -> Form:
    """Every part of a multipart/form-data body; MultipartError when malformed."""
    delimiter = b"--" + boundary_of(content_type)
    position = body.find(delimiter)
    if position < 0:
        raise MultipartError("the multipart body has no part")
    parts: list[Part] = []
    while True:
        position += len(delimiter)
        if body.startswith(b"--", position):
            break  # the closing delimiter
        if not body.startswith(b"\r\n", position):
            raise MultipartError("a multipart delimiter is not followed by a line break")
        header_end = body.find(b"\r\n\r\n", position + 2)
        if header_end < 0:
            raise MultipartError("a multipart part has no end of headers")
        headers = body[position + 2:header_end]
        start = header_end + 4
        next_delimiter = body.find(b"\r\n" + delimiter, start)
        if next_delimiter < 0:
            raise MultipartError("the multipart body is not closed")
        parts.append(_part(headers, body, start, next_delimiter))
        position = next_delimiter + 2
    by_name: dict[str, Part] = {}
    for part in parts:
        by_name.setdefault(part.name, part)
    return Form(tuple(parts), MappingProxyType(by_name))


def replace_field(body: bytes, form: Form, name: str, value: str) -> bytes:
    """`body` with the data of the plain field `name` replaced; every other byte kept."""
    part = form.by_name.get(name)
    if part is None or part.filename is not None:
        raise MultipartError(f"the form has no field {name!r}")
    return body[:part.start] + value.encode() + body[part.end:]


def _part(headers: bytes, body: bytes, start: int, end: int) -> Part:
    name = _NAME.search(headers)
    if name is None:
        raise MultipartError("a multipart part has no name")
    filename = _FILENAME.search(headers)
    content_type = _CONTENT_TYPE.search(headers)
    return Part(
        name=name.group(1).decode("utf-8", "replace"),
        filename=None if filename is None else filename.group(1).decode("utf-8", "replace"),
        content_type="" if content_type is None else content_type.group(1).strip().decode(
            "latin-1"),
        data=body[start:end],
        start=start,
        end=end,
    )
