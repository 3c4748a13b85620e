"""Ready settings for OpenAI-compatible vendors: `preset: deepseek` on an `openai` channel.

A preset fills what the channel leaves unset: base URL, the environment variable of the
key, how the key is sent, and the vendor's known quirks; anything the channel sets wins.
Facts from the vendors' API documentation as of 2025-10:
- stream_usage false: the server is not known to take `stream_options.include_usage`
  (llama.cpp's server reports usage without it); the router then counts what the stream
  reports and estimates what it does not.
- token_limit_field "max_tokens": the API documents `max_tokens` only, so a client's
  `max_completion_tokens` is renamed (OpenAI's newer name, the one o-series models need).
- responses_api false: no `/responses` endpoint; such requests are bridged onto chat.
- auth "none": local servers started without a key.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

from services.common.gateway_config import ChannelEntry
from services.router.errors import ChannelConfigError


@dataclass(frozen=True, slots=True)
class Preset:
    """One vendor's defaults for an `openai` channel."""

    base_url: str
    api_key_env: str = ""
    auth: str = "bearer"
    stream_usage: bool = True
    token_limit_field: str = ""
    responses_api: bool = False


PRESETS = MappingProxyType({
    "openai": Preset("https://api.openai.com/v1", "OPENAI_API_KEY", responses_api=True),
    "deepseek": Preset("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY",
                       token_limit_field="max_tokens"),
    "xai": Preset("https://api.x.ai/v1", "XAI_API_KEY", responses_api=True),
    "moonshot": Preset("https://api.moonshot.ai/v1", "MOONSHOT_API_KEY",
                       token_limit_field="max_tokens"),
    "qwen": Preset("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "DASHSCOPE_API_KEY",
                   token_limit_field="max_tokens"),
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "siliconflow": Preset("https://api.siliconflow.com/v1", "SILICONFLOW_API_KEY",
                          token_limit_field="max_tokens"),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "vllm": Preset("http://127.0.0.1:8000/v1", "VLLM_API_KEY", responses_api=True),
    "ollama": Preset("http://127.0.0.1:11434/v1", auth="none", token_limit_field="max_tokens"),
    "llamacpp": Preset("http://127.0.0.1:8080/v1", auth="none", stream_usage=False,
                       token_limit_field="max_tokens"),
})


def apply_preset(channel: ChannelEntry) -> ChannelEntry:
    """`channel` with its preset's defaults under what it sets; unchanged without a preset."""
    if not channel.preset:
        return channel
    preset = PRESETS.get(channel.preset)
    if preset is None:
        raise ChannelConfigError(
            f"channel {channel.name!r} has unknown preset {channel.preset!r} "
            f"(known: {', '.join(PRESETS)})")
    if channel.type != "openai":
        raise ChannelConfigError(f"channel {channel.name!r}: presets are for type 'openai'")
    return replace(
        channel,
        base_url=channel.base_url or preset.base_url,
        api_key_env=channel.api_key_env or preset.api_key_env,
        auth=channel.auth or preset.auth,
        stream_usage=preset.stream_usage if channel.stream_usage is None else channel.stream_usage,
        token_limit_field=channel.token_limit_field or preset.token_limit_field,
        responses_api=(preset.responses_api if channel.responses_api is None
                       else channel.responses_api),
    )
