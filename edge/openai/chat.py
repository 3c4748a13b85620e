"""The chat completion request (`POST /v1/chat/completions`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from edge.openai.base import MAX_TOKEN_CAP, OpenAIBaseModel

# --- message content parts ---------------------------------------------------------


class TextPart(OpenAIBaseModel):
    """A text content part."""

    type: Literal["text"]
    text: str


class ImageUrl(OpenAIBaseModel):
    """An image by URL or data URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(OpenAIBaseModel):
    """An image content part."""

    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(OpenAIBaseModel):
    """Base64 audio."""

    data: str
    format: str


class AudioPart(OpenAIBaseModel):
    """An audio content part."""

    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(OpenAIBaseModel):
    """A file by id or inline data."""

    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


class FilePart(OpenAIBaseModel):
    """A file content part."""

    type: Literal["file"]
    file: FileRef


class RefusalPart(OpenAIBaseModel):
    """A refusal content part (assistant messages)."""

    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]
TextContent = str | list[TextPart]

# --- messages ----------------------------------------------------------------------


class FunctionCall(OpenAIBaseModel):
    """A function name and its JSON-encoded arguments."""

    name: str
    arguments: str


class ToolCall(OpenAIBaseModel):
    """A tool call made by the assistant."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(OpenAIBaseModel):
    """Instructions from the system."""

    role: Literal["system"]
    content: TextContent
    name: str | None = None


class DeveloperMessage(OpenAIBaseModel):
    """Instructions from the developer."""

    role: Literal["developer"]
    content: TextContent
    name: str | None = None


class UserMessage(OpenAIBaseModel):
    """A message from the user."""

    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(OpenAIBaseModel):
    """A previous answer of the model."""

    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(OpenAIBaseModel):
    """The result of a tool call."""

    role: Literal["tool"]
    content: TextContent
    tool_call_id: str


class FunctionMessage(OpenAIBaseModel):
    """The result of a function call (deprecated by OpenAI, still accepted)."""

    role: Literal["function"]
    content: str | None
    name: str


ChatMessage = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]

# --- tools and formats -------------------------------------------------------------


class FunctionDefinition(OpenAIBaseModel):
    """A function the model may call."""

    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(OpenAIBaseModel):
    """A function tool."""

    type: Literal["function"]
    function: FunctionDefinition


class CustomTool(OpenAIBaseModel):
    """A custom (free-form input) tool."""

    type: Literal["custom"]
    custom: dict[str, Any]


Tool = Annotated[FunctionTool | CustomTool, Field(discriminator="type")]


class NamedToolChoice(OpenAIBaseModel):
    """Force a specific tool (`{"type": "function", "function": {"name": ...}}` and kin)."""

    type: str


class JsonSchemaFormat(OpenAIBaseModel):
    """A JSON schema the answer must follow."""

    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(OpenAIBaseModel):
    """Plain text answers."""

    type: Literal["text"]


class JsonObjectFormat(OpenAIBaseModel):
    """Any JSON object."""

    type: Literal["json_object"]


class JsonSchemaResponseFormat(OpenAIBaseModel):
    """JSON following a schema."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaResponseFormat, Field(discriminator="type")
]


class StreamOptions(OpenAIBaseModel):
    """Options of a streamed answer."""

    include_usage: bool | None = None


# --- the request -------------------------------------------------------------------


class ChatCompletionRequest(OpenAIBaseModel):
    """A chat completion request; unknown fields travel on untouched."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKEN_CAP)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKEN_CAP)
    n: int | None = Field(default=None, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: Literal["none", "auto"] | dict[str, str] | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
