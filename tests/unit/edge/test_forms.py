"""edge.openai.forms: form fields for pydantic, validation errors, the idempotency digest."""

from __future__ import annotations

import pytest

from edge.errors import ApiError
from edge.openai.audio import TranscriptionForm
from edge.openai.forms import UploadFile, form_digest, form_fields, read_form, validate_form
from edge.openai.images import ImageEditForm


def form_body(boundary: str, *parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
                      + data + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


EDIT = (("model", None, b"m"), ("prompt", None, b"hat"), ("n", None, b"2"),
        ("image[]", "a.png", b"A"), ("image[]", "b.png", b"B"))


def test_fields_keep_files_and_list_repeated_or_bracketed_names() -> None:
    fields = form_fields(read_form(*form_body("b1", *EDIT, ("tag", None, b"x"),
                                              ("tag", None, b"y"))))
    assert fields["model"] == "m" and fields["n"] == "2" and fields["tag"] == ["x", "y"]
    assert [f.data for f in fields["image"]] == [b"A", b"B"]
    assert isinstance(fields["image"][0], UploadFile)


def test_form_values_are_coerced_and_a_single_image_becomes_a_list() -> None:
    edit = validate_form(ImageEditForm, read_form(*form_body(
        "b", ("model", None, b"m"), ("prompt", None, b"p"), ("n", None, b"3"),
        ("image", "a.png", b"A"))))
    assert edit.n == 3 and [f.filename for f in edit.image] == ["a.png"]


@pytest.mark.parametrize(
    ("parts", "param"),
    [
        ((("model", None, b"m"),), "file"),
        ((("model", None, b"m"), ("file", None, b"not a file")), "file"),
        ((("model", None, b"m"), ("file", "a.wav", b"x"), ("temperature", None, b"hot")),
         "temperature"),
    ],
)
def test_validation_errors_name_the_field(
    parts: tuple[tuple[str, str | None, bytes], ...], param: str
) -> None:
    with pytest.raises(ApiError) as caught:
        validate_form(TranscriptionForm, read_form(*form_body("b", *parts)))
    assert (caught.value.status, caught.value.param) == (400, param)


def test_a_malformed_body_is_400() -> None:
    with pytest.raises(ApiError) as caught:
        read_form(b"--b\r\nno end", "multipart/form-data; boundary=b")
    assert caught.value.status == 400


def test_the_digest_ignores_the_boundary_but_not_the_content() -> None:
    first = form_digest(read_form(*form_body("boundary-1", *EDIT)))
    again = form_digest(read_form(*form_body("boundary-2", *EDIT)))
    changed = form_digest(read_form(*form_body("boundary-1", *EDIT[:-1],
                                               ("image[]", "b.png", b"C"))))
    assert first == again != changed
