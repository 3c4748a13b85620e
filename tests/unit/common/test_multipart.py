"""multipart/form-data parsing from bytes and in-place field replacement."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from services.common.multipart import MultipartError, boundary_of, parse_form, replace_field


def _encode(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """Encode a form the way aiohttp (and so many clients) does."""
    writer = aiohttp.MultipartWriter("form-data", boundary="b0und4ry-x")
    for name, value in fields.items():
        part = writer.append(value)
        part.set_content_disposition("form-data", name=name)
    for name, (filename, data, ctype) in files.items():
        part = writer.append(data, {"Content-Type": ctype})
        part.set_content_disposition("form-data", name=name, filename=filename)

    class _Sink:
        def __init__(self) -> None:
            self.data = b""

        async def write(self, chunk: bytes) -> None:
            self.data += chunk

    sink = _Sink()
    asyncio.run(writer.write(sink))  # type: ignore[arg-type]
    return sink.data, f"multipart/form-data; boundary={writer.boundary}"


def test_fields_and_files_are_read_with_their_bytes() -> None:
    audio = b"\x00\x01\r\n--not-a-boundary\r\n\xff" * 10
    body, ctype = _encode({"model": "whisper-1", "language": "en"},
                          {"file": ("a.wav", audio, "audio/wav")})
    form = parse_form(body, ctype)
    assert form.field("model") == "whisper-1"
    assert form.field("language") == "en"
    part = form.file("file")
    assert part is not None
    assert (part.filename, part.content_type, part.data) == ("a.wav", "audio/wav", audio)
    assert form.field("file") is None and form.file("model") is None


def test_replace_field_changes_only_that_field() -> None:
    body, ctype = _encode({"model": "alias", "n": "2"}, {"image": ("x.png", b"PNG", "image/png")})
    form = parse_form(body, ctype)
    rewritten = replace_field(body, form, "model", "upstream-model-id")
    again = parse_form(rewritten, ctype)
    assert again.field("model") == "upstream-model-id"
    assert again.field("n") == "2"
    assert rewritten.replace(b"upstream-model-id", b"alias") == body


@pytest.mark.parametrize("ctype", ["application/json", "multipart/form-data"])
def test_a_content_type_without_boundary_is_refused(ctype: str) -> None:
    with pytest.raises(MultipartError):
        boundary_of(ctype)


def test_quoted_boundary() -> None:
    assert boundary_of('multipart/form-data; boundary="a b"') == b"a b"


@pytest.mark.parametrize("body", [b"", b"--B\r\nno headers end", b"--B\r\nx: y\r\n\r\nunclosed",
                                  b'--B\r\ncontent-type: text/plain\r\n\r\nv\r\n--B--'])
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MultipartError):
        parse_form(body, "multipart/form-data; boundary=B")
