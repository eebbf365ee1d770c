"""A small attention model over the judge encoder's frozen word-piece vectors: the 30th feature
of a head trained with `python -m augment.qc.train_judge --attention`. Tried, not shipped: it
helped out of fold on the training writers' pairs and not on the held-out sets (figures in
`train_judge`'s docstring); the shipped head has 29 features and no such model.

Why: the head's coverage features ask whether each word piece of one text has a counterpart in
the other; they cannot see what the counterparts do ("refund Ana's order" vs "refund my order
to Ana" covers every piece). This model aligns every content piece of one text with the other's
(soft attention on their contextual vectors), compares each piece with what it aligned to, and
learns from the written pairs which differences change a request (decomposable attention,
Parikh et al. 2016, over a frozen encoder instead of word embeddings). Unlike the head's trees,
it can learn from every written pair, including those the rules reject, because its input is
the pair itself, not the rules' view of it.

Trained in `train_judge` with torch (0.25 M parameters; the encoder stays frozen and its
vectors are computed once; about 2 minutes a fit on 2 CPU cores, six fits); stored as float16
arrays inside the head's npz (keys `att_*`) and run at judge time in numpy, one pair at a time.

    >>> import numpy as np
    >>> w = init_weights(dim=4, hidden=3, seed=0)
    >>> a, b = np.eye(4)[:2], np.eye(4)[1:3]
    >>> 0 < p_changed(w, a, b, cosine=0.9) < 1
    True
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np

#: Content pieces read per text. The judge sees requests of at most 256 word pieces; about half
#: are stop words the vectors leave out.
MAX_PIECES = 128
PREFIX = "att_"


# --- inference, numpy ------------------------------------------------------------------------
def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _side(w: dict, a: np.ndarray, b: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Each row of `a` against the soft alignment of it in `b`, pooled (mean, max)."""
    beta = _softmax(e) @ b
    v = _relu(np.concatenate([a, beta, a - beta, a * beta], 1) @ w["cmp1_w"] + w["cmp1_b"])
    v = _relu(v @ w["cmp2_w"] + w["cmp2_b"])
    return np.concatenate([v.mean(0), v.max(0)])


def _pieces(x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)[:MAX_PIECES]
    return x if len(x) else np.zeros((1, dim), dtype=np.float32)  # as in training: one blank


def p_changed(w: dict, to: np.ndarray, tc: np.ndarray, cosine: float) -> float:
    """P(the request changed) for one pair: `to`, `tc` the unit vectors of the original's and
    the candidate's content pieces (`embed.judge_vectors`), `cosine` of their sentence vectors.
    `w`: arrays as `export` writes them, without the prefix."""
    dim = w["proj_w"].shape[0]
    A, B = _pieces(to, dim), _pieces(tc, dim)
    raw = A @ B.T
    e = float(w["temp"]) * raw
    a, b = A @ w["proj_w"] + w["proj_b"], B @ w["proj_w"] + w["proj_b"]
    cover = [raw.max(1).min(), cosine]
    h = np.concatenate([_side(w, a, b, e), _side(w, b, a, e.T), cover])
    logit = _relu(h @ w["out1_w"] + w["out1_b"]) @ w["out2_w"] + w["out2_b"]
    return float(1.0 / (1.0 + np.exp(-float(logit[0]))))


def load(arrays) -> dict | None:
    """The model's arrays from an opened `judge_head.npz` (float32), or None if it has none."""
    keys = [k for k in arrays.keys() if k.startswith(PREFIX)]
    if not keys:
        return None
    return {k[len(PREFIX):]: np.asarray(arrays[k], dtype=np.float32) for k in keys}


def init_weights(dim: int, hidden: int, seed: int = 0) -> dict:
    """Random arrays of the right shapes (for tests and the docstring example)."""
    return export(_net(dim, hidden, 0.0, seed))


# --- training, torch -------------------------------------------------------------------------
def _net(dim: int, hidden: int, dropout: float, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(dim, hidden)
            self.cmp1, self.cmp2 = nn.Linear(4 * hidden, hidden), nn.Linear(hidden, hidden)
            self.out1, self.out2 = nn.Linear(4 * hidden + 2, hidden), nn.Linear(hidden, 1)
            self.temp = nn.Parameter(torch.tensor(10.0))  # cosines are small: sharpen them
            self.drop = nn.Dropout(dropout)

        def side(self, a, b, ma, mb, e):
            beta = torch.softmax(e.masked_fill(~mb[:, None, :], -1e4), -1) @ b
            v = torch.relu(self.cmp1(torch.cat([a, beta, a - beta, a * beta], -1)))
            v = torch.relu(self.cmp2(self.drop(v))) * ma[..., None]
            mean = v.sum(1) / ma.sum(1, keepdim=True).clamp(min=1)
            return torch.cat([mean, v.masked_fill(~ma[..., None], -1e4).max(1).values], -1)

        def forward(self, A, B, ma, mb, cos):
            raw = A @ B.transpose(1, 2)
            a, b = self.drop(self.proj(A)), self.drop(self.proj(B))
            e = self.temp * raw
            cover = raw.masked_fill(~mb[:, None, :], -1).max(-1).values.masked_fill(~ma, 1)
            h = torch.cat([self.side(a, b, ma, mb, e), self.side(b, a, mb, ma, e.transpose(1, 2)),
                           torch.stack([cover.min(1).values, cos], -1)], -1)
            return self.out2(torch.relu(self.out1(self.drop(h)))).squeeze(-1)

    return Net()


def _batch(rows: Sequence[dict], sent: dict, pieces: dict):
    import torch
    dim = next(iter(sent.values())).shape[0]
    A_, B_ = ([_pieces(pieces[r[k]], dim) for r in rows] for k in ("original", "candidate"))
    n, m = max(len(x) for x in A_), max(len(x) for x in B_)
    A = np.zeros((len(rows), n, dim), np.float32)
    B = np.zeros((len(rows), m, dim), np.float32)
    ma, mb = np.zeros((len(rows), n), bool), np.zeros((len(rows), m), bool)
    for i, (x, y) in enumerate(zip(A_, B_)):
        A[i, :len(x)], B[i, :len(y)], ma[i, :len(x)], mb[i, :len(y)] = x, y, True, True
    cos = np.array([float(sent[r["original"]] @ sent[r["candidate"]]) for r in rows], np.float32)
    return [torch.from_numpy(z) for z in (A, B, ma, mb, cos)]


def fit(rows: Sequence[dict], sent: dict, pieces: dict, seed: int = 0, epochs: int = 12,
        hidden: int = 128, dropout: float = 0.2, lr: float = 1e-3, batch_size: int = 64):
    """Train on `rows` ({"original", "candidate", "label" (1 = changed), "weight"}); `sent`,
    `pieces`: text -> vectors from `embed.judge_vectors`. Deterministic for a seed on a given
    machine and thread count. Returns the torch module (eval mode)."""
    import torch
    import torch.nn.functional as F
    dim = next(iter(sent.values())).shape[0]
    net = _net(dim, hidden, dropout, seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(rows) // batch_size)
    warm = max(1, steps // 10)  # one cycle: a tenth warming up from lr/25, then cosine to 0

    def factor(step: int) -> float:
        if step < warm:
            return 0.04 + 0.96 * step / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, steps - warm))))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    order = list(rows)
    for _ in range(epochs):
        net.train()
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            b = order[i:i + batch_size]
            y = torch.tensor([float(r["label"]) for r in b])
            w = torch.tensor([float(r["weight"]) for r in b])
            loss = F.binary_cross_entropy_with_logits(net(*_batch(b, sent, pieces)), y,
                                                      reduction="none")
            loss = (loss * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def predict(net, rows: Sequence[dict], sent: dict, pieces: dict) -> np.ndarray:
    import torch
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), 256):
            out.append(torch.sigmoid(net(*_batch(rows[i:i + 256], sent, pieces))).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def export(net) -> dict:
    """The module's weights as numpy arrays named as `p_changed` reads them (x @ W layout)."""
    sd = {k: v.detach().float().numpy() for k, v in net.state_dict().items()}
    out = {"temp": sd["temp"].reshape(())}
    for name in ("proj", "cmp1", "cmp2", "out1", "out2"):
        out[f"{name}_w"], out[f"{name}_b"] = sd[f"{name}.weight"].T.copy(), sd[f"{name}.bias"]
    return out
