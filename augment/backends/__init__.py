"""LLM backends by name, and the factory the methods use.

A plain dict (no plugin machinery): `make_llm(cfg)` looks up `cfg.llm_backend`. The backend
modules import their SDKs lazily, so importing this package costs nothing.

    LLM_BACKENDS = {"anthropic": AnthropicBackend, "openai_compatible": OpenAICompatibleBackend,
                    "local": LocalHFBackend}

Every backend has `name`, `model`, `async complete(system, user, *, max_tokens, temperature,
seed=None) -> Completion` (rate limits and retries inside) and `async aclose()`.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .llm_anthropic import KEY_ENV as ANTHROPIC_KEY_ENV
from .llm_anthropic import AnthropicBackend
from .llm_local import LocalHFBackend, embedded_smollm2_path
from .llm_openai import OpenAICompatibleBackend

LLM_BACKENDS = {
    "anthropic": AnthropicBackend,
    "openai_compatible": OpenAICompatibleBackend,
    "local": LocalHFBackend,
}


def make_llm(cfg, **kwargs):
    """The LLM backend named by `cfg.llm_backend`, built from `cfg`."""
    try:
        cls = LLM_BACKENDS[cfg.llm_backend]
    except KeyError:
        raise ConfigError(f"llm_backend={cfg.llm_backend!r} is not one of "
                          f"{tuple(LLM_BACKENDS)}.") from None
    if cfg.llm_backend == "anthropic" and not os.environ.get(ANTHROPIC_KEY_ENV):
        raise ConfigError(f"llm_backend=anthropic needs {ANTHROPIC_KEY_ENV} in the environment "
                          "(keys are read from the environment only); export it, or use "
                          "llm_backend=local.")
    return cls(cfg, **kwargs)


__all__ = ["LLM_BACKENDS", "make_llm", "AnthropicBackend", "OpenAICompatibleBackend",
           "LocalHFBackend", "embedded_smollm2_path"]
