"""Paraphrase-consistency loss: one answer, two wordings of the request, one distribution.

With `consistency_weight > 0` the sampler puts a row's original and one of its instruction-side
variants at positions (2k, 2k+1) of a micro-batch (augment/sampler.py) and the collator tags the
pair (`aug_pair`). Both examples end with the same answer tokens, so after the prompts diverge
the model predicts the same next tokens from two contexts. The trainer adds

    consistency_weight x mean over those shared answer tokens of D(p_original, p_variant)

to TRL's loss, where p is the next-token distribution over the whole vocabulary (PPCL, Qiang et
al., EACL 2024, used the same term on intent classification and slot filling).

Divergence. Jensen-Shannon by default: symmetric, so neither wording is the teacher (both sides
get gradient, as in PPCL); bounded by ln 2, so a pair the model sees very differently early in
training cannot swamp TRL's loss; finite where one distribution puts (almost) no mass, where KL
explodes. `sym_kl` (KL(p||q) + KL(q||p)) is offered for sharper pressure on confident
disagreements, unbounded.

Which tokens. Per pair: the labelled positions from the first token where the two inputs differ
(the changed user turn; position 0 when the prompts are identical) onwards, aligned in order,
and kept while the two label sequences agree (a longer variant prompt can push the answer's
tail past max_length). In a multi-turn chat with `loss_turns: all` that is every assistant turn
after the reworded one; the turns before it see identical contexts, so they would only add
zeros. Hidden state t-1 predicts label t, as in TRL's fused head.

Memory. The divergence needs the full distributions, which TRL's fused head never builds. Here
they are built for `chunk` tokens at a time, each chunk under activation checkpointing, so
backward recomputes it instead of keeping it: the extra peak is a few chunk-sized tensors,
never tokens x vocabulary for the batch (`bench/figures/consistency.py` measures it). A chunk's
fp32 distribution is made just larger than 32 MiB (66 tokens at Llama 3's 128,256 entries):
that is glibc's largest mmap threshold, so on CPU every chunk's memory goes back to the system
when freed. Smaller chunks land in the heap and stay resident: 16 MiB chunks (32 tokens) left
3.4 GB resident for 1,920 shared tokens, where 66-token chunks peaked at 0.57 GB. No second
forward pass: the hidden states are the ones TRL's own forward made (a hook on the backbone).

>>> import torch
>>> head = torch.nn.Linear(4, 7, bias=False)
>>> h = torch.randn(1, 3, 4)
>>> ids = torch.tensor([[1, 2, 3]]); labels = torch.tensor([[-100, 2, 3]])
>>> pos = shared_answer_positions(torch.cat([ids, ids]), torch.cat([labels, labels]),
...                               torch.tensor([1, 0]), torch.tensor([3, 3]))
>>> [p.tolist() for p in pos]
[[0, 0], [0, 1], [1, 1], [0, 1]]
>>> total, n = divergence_sum(torch.cat([h, h]), pos, head)
>>> n, round(float(total), 6)
(2, 0.0)
"""

from __future__ import annotations

import math

import torch

CHUNK_BYTES = 32 * 2 ** 20 + 1  # one chunk's fp32 distribution: just over glibc's mmap threshold


def shared_answer_positions(input_ids: torch.Tensor, labels: torch.Tensor,
                            partners: torch.Tensor, lengths: torch.Tensor):
    """(rows_a, pos_a, rows_b, pos_b): for each pair (a, b) of `partners` (a < b), the HIDDEN
    positions (label position - 1) of the answer tokens both examples share, in order. Long
    tensors of equal length, on the inputs' device."""
    rows_a, pos_a, rows_b, pos_b = [], [], [], []
    ids, lab = input_ids.cpu(), labels.cpu()
    for a, b in enumerate(partners.tolist()):
        if b <= a:
            continue
        la, lb = int(lengths[a]), int(lengths[b])
        common = min(la, lb)
        diff = (ids[a, :common] != ids[b, :common]).nonzero()
        start = int(diff[0]) if len(diff) else (0 if la == lb else common)
        start = max(start, 1)  # label t is predicted from position t - 1
        ta = (lab[a, :la] != -100).nonzero().flatten()
        tb = (lab[b, :lb] != -100).nonzero().flatten()
        ta, tb = ta[ta >= start], tb[tb >= start]
        k = min(len(ta), len(tb))
        agree = (lab[a, ta[:k]] == lab[b, tb[:k]]).long().cumprod(0)
        k = int(agree.sum())
        rows_a.append(torch.full((k,), a))
        rows_b.append(torch.full((k,), b))
        pos_a.append(ta[:k] - 1)
        pos_b.append(tb[:k] - 1)
    dev = input_ids.device
    if not rows_a:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty, empty, empty
    return tuple(torch.cat(x).to(dev) for x in (rows_a, pos_a, rows_b, pos_b))


def _token_divergence(ha, hb, head, softcap, scale, kind):
    """Divergence of each token's two next-token distributions, summed (fp32)."""
    za, zb = head(ha).float(), head(hb).float()
    if scale != 1.0:
        za, zb = za * scale, zb * scale
    if softcap:
        za, zb = softcap * torch.tanh(za / softcap), softcap * torch.tanh(zb / softcap)
    la, lb = torch.log_softmax(za, -1), torch.log_softmax(zb, -1)
    if kind == "js":
        lm = torch.logaddexp(la, lb) - math.log(2.0)
        d = 0.5 * ((la.exp() * (la - lm)).sum(-1) + (lb.exp() * (lb - lm)).sum(-1))
    elif kind == "sym_kl":
        d = ((la.exp() - lb.exp()) * (la - lb)).sum(-1)
    else:
        raise ValueError(f"consistency divergence {kind!r} is not one of ('js', 'sym_kl').")
    return d.sum()


def divergence_sum(hidden: torch.Tensor, positions, head, *, kind: str = "js",
                   softcap: float | None = None, scale: float = 1.0,
                   chunk: int | None = None) -> tuple[torch.Tensor, int]:
    """(sum of the per-token divergence over the shared tokens, their count). `hidden` is the
    backbone's last hidden state (batch, length, hidden); `head` the LM head module (LoRA on it
    included). Chunked and checkpointed when gradients are on; see the module doc."""
    rows_a, pos_a, rows_b, pos_b = positions
    n = int(rows_a.numel())
    if n == 0:
        return hidden.sum() * 0.0, 0  # connected to the graph, contributes nothing
    ha, hb = hidden[rows_a, pos_a], hidden[rows_b, pos_b]
    vocab = head.out_features if hasattr(head, "out_features") else head.weight.shape[0]
    step = chunk or -(-CHUNK_BYTES // (4 * vocab))
    grad = torch.is_grad_enabled() and (ha.requires_grad or hb.requires_grad)
    total = None
    for s in range(0, n, step):
        args = (ha[s:s + step], hb[s:s + step], head, softcap, scale, kind)
        part = (torch.utils.checkpoint.checkpoint(_token_divergence, *args, use_reentrant=False)
                if grad else _token_divergence(*args))
        total = part if total is None else total + part
    return total, n


def head_transform(model) -> tuple[float | None, float]:
    """(final_logit_softcapping, logit scale) of a causal LM's config: the logit transforms TRL's
    fused head and distillation loss apply (trl/trainer/utils.py `add_fused_lm_head`), looked up
    in the same order, so the term compares the distributions the model really has. Cohere's
    `logit_scale`, `output_multiplier`, Falcon-H1's `lm_head_multiplier`, then `logits_scaling`
    (Granite and MiniCPM3 divide by it, HyperCLOVA X multiplies); Gemma 2 caps.

    >>> from types import SimpleNamespace
    >>> head_transform(SimpleNamespace(config=SimpleNamespace(model_type="granite", logits_scaling=4.0)))
    (None, 0.25)
    """
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    scale = getattr(cfg, "logit_scale", None)
    for name in ("output_multiplier", "lm_head_multiplier"):
        scale = getattr(cfg, name, None) if scale is None else scale
    if scale is None and getattr(cfg, "logits_scaling", None) is not None:
        scale = cfg.logits_scaling if cfg.model_type == "hyperclovax" else 1 / cfg.logits_scaling
    return getattr(cfg, "final_logit_softcapping", None), 1.0 if scale is None else float(scale)
