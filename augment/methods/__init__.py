"""Augmentation methods by name, and the builder that gives each one its backend.

Every method has `name`, `field`, `prompt_version`, `requests(rows) -> list[Request]`,
`async run(request) -> Result` and `estimate(request) -> (input_tokens, output_tokens)`.
`build_methods(cfg)` creates only the backends the selected methods need, and the LLM backend
at most once and only when a request first reaches it: a `--dry_run`, or a build whose
requests are all cached, never loads a local model or opens an API client.
"""

from __future__ import annotations

from .backtranslate import Backtranslate
from .outputs import Outputs
from .paraphrase import Paraphrase
from .refusals import Refusals, load_harmful_cases
from .templates import TEMPLATES, Templates, apply_template

METHODS = {
    "paraphrase": Paraphrase,
    "backtranslate": Backtranslate,
    "templates": Templates,
    "refusals": Refusals,
    "outputs": Outputs,
}


class LazyLLM:
    """An LLMBackend that builds the real one (`make_llm(cfg)`) on first `complete`.

    `name` and `model` come from the config, so request keys never depend on whether the
    backend was built.
    """

    def __init__(self, cfg, factory=None):
        self.cfg = cfg
        self.name = cfg.llm_backend
        self.model = cfg.llm_model
        self._factory = factory
        self._backend = None

    def __repr__(self) -> str:
        return f"LazyLLM(name={self.name!r}, model={self.model!r}, built={self.built})"

    @property
    def built(self) -> bool:
        return self._backend is not None

    def get(self):
        if self._backend is None:  # no await in between: one build per event loop turn
            if self._factory is None:
                from ..backends import make_llm
                self._factory = make_llm
            self._backend = self._factory(self.cfg)
        return self._backend

    async def complete(self, system, user, *, max_tokens, temperature, seed=None):
        return await self.get().complete(system, user, max_tokens=max_tokens,
                                         temperature=temperature, seed=seed)

    @property
    def supports_batches(self) -> bool:
        """Whether the configured backend has a batch API (without building it)."""
        from ..backends import LLM_BACKENDS
        return hasattr(LLM_BACKENDS.get(self.name), "complete_many")

    async def complete_many(self, items, **kwargs):
        return await self.get().complete_many(items, **kwargs)

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.aclose()


def build_methods(cfg, *, llm_factory=None) -> dict:
    """{name: method} for cfg.augment_methods, each with the backend it needs.

    `llm_factory(cfg)` overrides `augment.backends.make_llm` (tests, custom backends).
    """
    llm_holder = []

    def llm():
        if not llm_holder:
            llm_holder.append(LazyLLM(cfg, llm_factory))
        return llm_holder[0]

    out = {}
    for name in cfg.augment_methods:
        if name == "paraphrase":
            out[name] = Paraphrase(cfg, llm())
        elif name == "backtranslate":
            from ..backends.translate import make_translator
            out[name] = Backtranslate(cfg, make_translator(cfg, llm))
        elif name == "templates":
            out[name] = Templates(cfg)
        elif name == "refusals":
            out[name] = Refusals(cfg, llm() if cfg.refusals_paraphrase else None)
        elif name == "outputs":
            if cfg.outputs_backend == "llm":
                out[name] = Outputs(cfg, llm())
            else:
                from ..backends.extractive import ExtractiveBackend
                out[name] = Outputs(cfg, ExtractiveBackend())
        else:
            raise KeyError(name)  # unreachable: AugmentConfig validates the names
    return out


__all__ = ["METHODS", "build_methods", "LazyLLM", "Paraphrase", "Backtranslate", "Templates",
           "Refusals", "Outputs", "load_harmful_cases", "apply_template", "TEMPLATES"]
