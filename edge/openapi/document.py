"""Loading the OpenAPI document: YAML in the package, JSON bytes on the wire.

The YAML file uses anchors and merge keys to write shared parts once; loading it
resolves them, so the JSON served has none.
"""

from __future__ import annotations

import functools
from importlib import resources

import orjson
import yaml

DOCUMENT_FILE = "openapi.yaml"


@functools.cache
def openapi_json() -> bytes:
    """The document as JSON bytes, read and converted once per process."""
    text = resources.files(__package__).joinpath(DOCUMENT_FILE).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return orjson.dumps(yaml.load(text, Loader=loader))
