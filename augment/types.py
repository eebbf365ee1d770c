"""The few value types that methods, backends, the cache and the build share.

Kept in one small module so that `augment.methods`, `augment.backends`, `augment.cache` and
`augment.build` can agree on them without importing each other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

# Method names are part of the public surface (metric names `loss_<method>`, the summary file).
METHOD_NAMES = ("paraphrase", "backtranslate", "templates", "refusals", "outputs")

# Which field of a training row a method rewrites. Refusals make new (prompt, completion) pairs.
METHOD_FIELDS = {
    "paraphrase": "prompt",
    "backtranslate": "prompt",
    "templates": "prompt",
    "outputs": "completion",
    "refusals": "refusal",
}

# Methods that reword the instruction and keep the answer: the only ones a consistency pair may
# use (the answer must be the same for both prompts; `outputs` changes it, refusals replace it).
INSTRUCTION_METHODS = tuple(m for m, f in METHOD_FIELDS.items() if f == "prompt")


@dataclass(frozen=True)
class Row:
    """One normalised training example. `id` is stable across runs (file id column or line).

    `prompt` is the user turn that augmentation rewrites and `completion` the assistant answer
    that follows it. A conversation (a system message, or several user/assistant turns) also
    keeps every message in `messages`, as (role, content) pairs in order, ending with the
    assistant turn whose text is `completion`; a plain single-turn pair leaves it empty. See
    `augment.conversation` for how a variant is put back into its turn."""

    id: str
    prompt: str
    completion: str
    messages: tuple = ()
    turn: int = -1  # a unit of augment_turns=all: which earlier user turn `prompt` is (-1: the last)

    @property
    def context(self) -> tuple:
        """The messages before the last user turn (system prompt, earlier turns)."""
        return self.messages[:-2] if self.messages else ()


@dataclass(frozen=True)
class Request:
    """One unit of (possibly expensive) work, and one cache key.

    Everything that changes what a backend would return is part of the key; anything else
    (the row id, the completion shown to an output method as context) is not, so two datasets
    that share a prompt share its paraphrases.
    """

    method: str
    field: str
    source: str
    backend: str
    model: str = ""
    prompt_version: str = ""
    params: tuple = ()  # sorted (name, value) pairs; use `Request.make` to build one

    @staticmethod
    def make(method, field, source, backend, model="", prompt_version="", **params) -> "Request":
        return Request(method, field, source, backend, model or "", prompt_version or "",
                       tuple(sorted((k, _freeze(v)) for k, v in params.items())))

    @property
    def param_dict(self) -> dict:
        return {k: _thaw(v) for k, v in self.params}

    @property
    def key(self) -> str:
        payload = json.dumps(
            [self.source, self.field, self.method, self.backend, self.model,
             self.prompt_version, [[k, _thaw(v)] for k, v in self.params]],
            ensure_ascii=False, separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def provenance(self) -> dict:
        """What goes next to every candidate: where it came from, reproducibly."""
        return {"method": self.method, "field": self.field, "backend": self.backend,
                "model": self.model, "prompt_version": self.prompt_version,
                "params": self.param_dict}


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _thaw(v):
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


@dataclass
class Candidate:
    """One candidate text from a method. `prompt` is set only by `refusals`, whose candidates
    are whole (prompt, refusal) pairs rather than a rewrite of one field."""

    text: str
    prompt: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Result:
    """What one request produced. `problems` lists what was wrong with the raw backend output
    and was repaired or dropped (for example "dropped 1 item identical to the source")."""

    candidates: list[Candidate]
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    problems: list[str] = field(default_factory=list)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Completion:
    """One LLM answer with its accounting. `retries` counts transient failures survived.
    `stop_reason` is what the backend said ended the reply ("max_tokens" from Anthropic and the
    local backend, "length" from OpenAI-compatible servers: the reply was cut), None if untold."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    stop_reason: str | None = None


#: The stop reasons that mean a reply was cut at max_tokens ("max_tokens": Anthropic and the
#: local backend; "length": OpenAI-compatible servers).
CUT_REASONS = ("max_tokens", "length")


def is_cut(completion) -> bool:
    """Whether a completion (anything with `stop_reason`) stopped at max_tokens: one test for
    the methods' replies and the LLM judge's verdicts."""
    return getattr(completion, "stop_reason", None) in CUT_REASONS
