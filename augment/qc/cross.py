"""A cross-encoder for the judge: all-MiniLM-L6-v2 reads the original and the candidate as ONE
sequence, with LoRA adapters and a logistic output learnt from the project's own written and
generated pairs. Its P(changed) is averaged (in logits) with the head's trees.

Why: the head's features compare the two texts piece by piece from vectors computed apart; a
role swap ("a note to my manager" -> "a note from my manager to me") keeps every piece. Reading
both texts at once, every layer attends across them and can see who does what to whom. The
trees stay: out of fold the two disagree where each is weak, and their average ranks better
than either (figures in `train_judge`'s docstring).

Why MiniLM and not mpnet: the QC already loads it, it is five times cheaper to run, and the
training must fit a CPU (about 40 minutes on 2 cores). Only the adapters and the output ship
(`judge_cross.npz`, float16, 1.25 MB); at load they are merged into a private copy of the
packaged encoder's weights, so judging needs no peft and costs two encoder passes per pair
(one each way round).

Trained by `python -m augment.qc.train_judge --cross` on the written pairs of four of the five
folds (by original) and 3,000 generated pairs, each in both orders; the fold left out (fold 0,
`train_judge.CROSS_FOLD`) chooses the averaging weight and the threshold, as data the adapters
never saw. Why both orders: trained one way round it ranked the training writers' pairs better
than the trees did and other writers' pairs worse, as if it had learnt the training writers'
habits. Trained on both and reading both (the logits averaged), it is symmetric and let fewer
meaning changes through on all four held-out sets of the time (figures in docs/qc.md).
"""

from __future__ import annotations

import copy
import random
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .words import _CARDINALS

ENCODER = "all-MiniLM-L6-v2"
CROSS_PATH = Path(__file__).resolve().parent / "judge_cross.npz"
MAX_LENGTH = 160
RANK = 16
LR = 5e-4
#: Epochs over the training rows, which `train_judge` gives in both orders (original/candidate
#: and candidate/original): as many steps as 4 epochs one way round.
EPOCHS = 2
BATCH = 32
#: Torch threads while training. The result depends on the thread count (a sum split over two
#: threads rounds differently), so training always uses one: the same file whatever the core
#: count (another CPU kind or torch build may still round differently).
THREADS = 1


def _batches(rows: Sequence[dict], size: int, rng: random.Random | None) -> list[list[int]]:
    """Indices in batches of similar length (less padding), batch order shuffled by `rng`."""
    idx = sorted(range(len(rows)), key=lambda i: len(rows[i]["original"]) + len(rows[i]["candidate"]))
    out = [idx[i:i + size] for i in range(0, len(idx), size)]
    if rng is not None:
        rng.shuffle(out)
    return out


#: What the output layer reads: the mean of the last hidden states (shipped), or the first
#: token's ([CLS], which attends to both texts; `train_judge --cross-pooling cls`).
POOLINGS = ("mean", "cls")


def _logits(tok, bert, head, rows):
    enc = tok([r["original"] for r in rows], [r["candidate"] for r in rows], padding=True,
              truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    h = bert(**enc).last_hidden_state
    if getattr(head, "pooling", "mean") == "cls":
        return head(h[:, 0]).squeeze(-1)
    m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
    return head((h * m).sum(1) / m.sum(1)).squeeze(-1)


def fit(rows: Sequence[dict], seed: int = 0, epochs: int | None = None, log=print,
        pooling: str = "mean"):
    """LoRA adapters (rank `RANK` on every linear layer) and a logistic output over the mean of
    MiniLM's last hidden states (`pooling="cls"`: the first token's), trained on `rows`
    (original, candidate, label 0/1) with AdamW and a one-cycle schedule. Returns (tokenizer,
    peft model, output layer).

    Deterministic for a seed (trained at `THREADS` torch threads). In the first epoch only the
    adapters' dropout is on, from the second the encoder's own too: the encoder comes out of
    `load_model` in eval mode (the new adapter layers start in training mode) and is switched
    to training mode after the first epoch. That is how the run that set the shipped figures
    went; the order is kept so that the documented command rebuilds the same file."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    import torch
    epochs = EPOCHS if epochs is None else epochs
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _fit(rows, seed, epochs, log, pooling)
    finally:
        torch.set_num_threads(threads)


def _fit(rows, seed, epochs, log, pooling="mean"):
    import torch
    from peft import LoraConfig, get_peft_model

    from .embed import load_model
    torch.manual_seed(seed)
    rng = random.Random(seed)
    st = load_model(ENCODER)
    tok, bert = st.tokenizer, copy.deepcopy(st[0].auto_model)  # never the QC's own copy
    bert.eval()
    names = sorted({n.split(".")[-1] for n, m in bert.named_modules()
                    if isinstance(m, torch.nn.Linear)})
    bert = get_peft_model(bert, LoraConfig(r=RANK, lora_alpha=2 * RANK, lora_dropout=0.05,
                                           target_modules=names))
    head = torch.nn.Linear(bert.config.hidden_size, 1)
    head.pooling = pooling
    params = [p for p in bert.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    steps = epochs * len(_batches(rows, BATCH, None))
    log(f"cross-encoder: training on {len(rows)} rows, {epochs} epochs ({steps} steps) at "
        f"{THREADS} torch thread(s)")
    # a 10% warm-up; under 20 steps OneCycleLR's warm-up of 0.1 * steps - 1 steps can come
    # out as zero (10 steps) and divide by it, so a short run gets half a step instead
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps,
                                                pct_start=0.1 if steps >= 20 else 0.5 / steps)
    t0, step = time.time(), 0
    for epoch in range(epochs):
        for b in _batches(rows, BATCH, rng):
            batch = [rows[i] for i in b]
            y = torch.tensor([float(r["label"]) for r in batch])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                _logits(tok, bert, head, batch), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0:
                log(f"cross-encoder: step {step}/{steps}, loss {loss.item():.3f}, "
                    f"{time.time() - t0:.0f}s")
        bert.train()
    bert.eval()
    return tok, bert, head


def predict(tok, bert, head, rows: Sequence[dict], batch_size: int = 64) -> np.ndarray:
    """P(changed) of each (original, candidate) row."""
    import torch
    out = np.zeros(len(rows))
    was = bert.training
    bert.eval()
    with torch.no_grad():
        for b in _batches(rows, batch_size, None):
            out[b] = torch.sigmoid(_logits(tok, bert, head, [rows[i] for i in b])).numpy()
    bert.train(was)
    return out


def reversed_rows(rows: Sequence[dict]) -> list[dict]:
    """The same pairs read the other way round (candidate first): a meaning change is one
    either way, and training on both orders keeps the model from learning which text the
    writers' rewrites sit in."""
    return [dict(r, original=r["candidate"], candidate=r["original"]) for r in rows]


def predict_both_ways(tok, bert, head, rows: Sequence[dict], batch_size: int = 64) -> np.ndarray:
    """P(changed) from the two readings of each row, their logits averaged (`combine`)."""
    return combine(predict(tok, bert, head, reversed_rows(rows), batch_size),
                   predict(tok, bert, head, rows, batch_size), 0.5)


def export(bert, head) -> dict:
    """The adapters and the output layer as float16 arrays: `lora` keys are the adapted
    module's path inside the encoder, then `.A` / `.B`."""
    out, scaling = {}, set()
    for name, module in bert.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            path = name.split("base_model.model.", 1)[-1]
            out[f"lora:{path}.A"] = module.lora_A["default"].weight.detach().numpy()
            out[f"lora:{path}.B"] = module.lora_B["default"].weight.detach().numpy()
            scaling.add(module.scaling["default"])  # lora_alpha / r, one for all modules
    out = {k: v.astype(np.float16) for k, v in out.items()}
    out["out_w"] = head.weight.detach().numpy().astype(np.float16)[0]
    out["out_b"] = np.float32(head.bias.detach().numpy()[0])
    (out["scaling"],) = (np.float32(x) for x in scaling)
    if getattr(head, "pooling", "mean") != "mean":  # files without it pool by the mean
        out["pooling"] = np.str_(head.pooling)
    return out


class CrossEncoder:
    """The exported adapters merged into a private copy of the packaged encoder the file names
    (`encoder`; files without one are MiniLM's); `p_changed` reads pairs. Loading costs a copy
    of the encoder's weights (90 MB for MiniLM) once per process. `source` names the file in
    errors.

    Why the file's encoder: adapters are deltas to one encoder's weights, and merged into
    another's they fail on a shape, or worse, fit and mean nothing. An adapter whose layer or
    shape the named encoder lacks is refused here, before any pair is read."""

    def __init__(self, arrays, device: str = "cpu", batch_size: int = 64,
                 source: str = "the cross-encoder's arrays") -> None:
        import torch

        from ..errors import ConfigError
        from .embed import PACKAGED_ENCODERS, load_model
        encoder = str(arrays["encoder"]) if "encoder" in arrays else ENCODER
        retrain = "retrain it with `python -m augment.qc.train_judge --cross`"
        if encoder not in PACKAGED_ENCODERS:
            raise ConfigError(f"{source}: names the encoder {encoder}; the cross-encoder loads "
                              f"the packaged {' or '.join(PACKAGED_ENCODERS)} only; {retrain}.")
        st = load_model(encoder, device)
        self.encoder, self.tok = encoder, st.tokenizer
        self.bert = copy.deepcopy(st[0].auto_model).eval()
        scaling = float(arrays["scaling"])
        modules = dict(self.bert.named_modules())

        def misfit(what: str) -> ConfigError:
            return ConfigError(f"{source}: {what} does not fit {encoder}, the encoder the file "
                               f"names (trained on another?); {retrain}.")
        hidden = self.bert.config.hidden_size
        if np.shape(arrays["out_w"]) != (hidden,):
            raise misfit(f"the output layer ({np.size(arrays['out_w'])} inputs)")
        with torch.no_grad():
            for key in arrays:
                if key.startswith("lora:") and key.endswith(".A"):
                    path = key[len("lora:"):-2]
                    if f"lora:{path}.B" not in arrays:
                        raise ConfigError(f"{source}: lacks lora:{path}.B, the other half of "
                                          f"lora:{path}.A; {retrain}.")
                    a = torch.from_numpy(np.asarray(arrays[key], dtype=np.float32))
                    b = torch.from_numpy(np.asarray(arrays[f"lora:{path}.B"], dtype=np.float32))
                    w = getattr(modules.get(path), "weight", None)
                    if (w is None or a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]
                            or tuple(w.shape) != (b.shape[0], a.shape[1])):
                        raise misfit(f"the adapter for {path}")
                    w += (scaling * b @ a).to(w.dtype).to(w.device)
        self.head = torch.nn.Linear(hidden, 1).to(device)
        self.head.pooling = str(arrays["pooling"]) if "pooling" in arrays else "mean"
        if self.head.pooling not in POOLINGS:
            raise ConfigError(f"{source}: pools by {self.head.pooling!r}, not one of "
                              f"{', '.join(POOLINGS)}; {retrain}.")
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(arrays["out_w"].astype(np.float32))[None])
            self.head.bias.fill_(float(arrays["out_b"]))
        self.batch_size = batch_size
        # files trained on both orders are read both ways (older ones: one way round)
        self.both_ways = bool(arrays.get("both_ways", False))

    def p_changed(self, pairs: Sequence[tuple[str, str]], canonical: bool = True) -> np.ndarray:
        """P(changed) of each pair; `canonical`: numbers in one spelling first (see
        `canonical_numbers`; off only to compare with the trained model on raw text)."""
        fix = canonical_numbers if canonical else (lambda t: t)
        rows = [{"original": fix(o), "candidate": fix(c)} for o, c in pairs]
        read = predict_both_ways if self.both_ways else predict
        return read(self.tok, self.bert, self.head, rows, self.batch_size)


_TENS = [w for w, v in _CARDINALS.items() if v >= 20]  # twenty ... ninety
_COMPOUND = re.compile(r"\b(" + "|".join(_TENS) + r")[- ](" + "|".join(
    w for w, v in _CARDINALS.items() if 1 <= v <= 9) + r")\b", re.I)
_WORD = re.compile(r"\b(" + "|".join(_CARDINALS) + r")\b", re.I)
_GROUPED = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_CURRENCY = {"$": "dollars", "us$": "dollars", "usd": "dollars", "€": "euros", "eur": "euros",
             "£": "pounds", "gbp": "pounds", "¥": "yen", "jpy": "yen", "₹": "rupees",
             "inr": "rupees"}
_AMOUNT = r"(\d+(?:\.\d+)?(?:\s?(?:k|m|bn|thousand|million|billion)\b)?)"
_SYMBOL_FIRST = re.compile(r"(\b(?:US\$|USD|EUR|GBP|JPY|INR)|(?<![\w$])[$€£¥₹])\s?" + _AMOUNT,
                           re.I)
_CODE_AFTER = re.compile(_AMOUNT + r"\s?(USD|EUR|GBP|JPY|INR)\b", re.I)


def canonical_numbers(text: str) -> str:
    """Numbers in one spelling: digit groups without separators, number words up to ninety-nine
    as digits, amounts of money as "<amount> <currency word>" ("fifteen" -> "15",
    "twenty-five" -> "25", "$1,500" -> "1500 dollars", "EUR 300" -> "300 euros").

    Why: the cross-encoder reads tokens, and learnt from its pairs that different digits mean a
    changed value, so "under $1,500" -> "less than $1500" scored 0.998 (the rules, which compare
    the numbers' values, accept it). Currency symbols matter too: MiniLM's tokenizer glues
    "£" and "€" to the digits ("£2000" -> "£2", "##00", "##0"), so "under €300" -> "under 300
    euros" scored 0.985 and "£2,000" -> "2000 pounds" 0.998. Both texts are rewritten the same
    way before it reads them; a changed value or currency stays changed. Training and
    calibration read the raw texts.

    >>> canonical_numbers("Fifteen licences, twenty-five seats, $1,500 and 12,000,000 rows")
    '15 licences, 25 seats, 1500 dollars and 12000000 rows'
    >>> canonical_numbers("under €300, £2.5m or 40 USD a month")
    'under 300 euros, 2.5m pounds or 40 dollars a month'
    """
    text = _GROUPED.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _COMPOUND.sub(lambda m: str(_CARDINALS[m.group(1).lower()] +
                                       _CARDINALS[m.group(2).lower()]), text)
    text = _WORD.sub(lambda m: str(_CARDINALS[m.group(1).lower()]), text)
    text = _SYMBOL_FIRST.sub(lambda m: f"{m.group(2)} {_CURRENCY[m.group(1).lower()]}", text)
    return _CODE_AFTER.sub(lambda m: f"{m.group(1)} {_CURRENCY[m.group(2).lower()]}", text)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def combine(p_head: np.ndarray, p_cross: np.ndarray, weight: float) -> np.ndarray:
    """The judge's P(changed): the two models' logits averaged, `weight` on the cross-encoder."""
    z = weight * logit(p_cross) + (1 - weight) * logit(p_head)
    return 1.0 / (1.0 + np.exp(-z))
