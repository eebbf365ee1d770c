"""The launch path end to end on a tiny Llama: one process, two synced processes, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_env

METRICS = ["loss", "aug_fraction", "loss_original", "loss_augmented", "loss_templates", "aug_similarity_mean"]


def sft_cmd(model, out, *extra):
    return [sys.executable, str(ROOT / "train/sft.py"), "--config", str(ROOT / "configs/tiny.yaml"),
            "--model_name_or_path", model, "--output_dir", str(out),
            "--augment_cache", str(Path(out).parent / "cache.sqlite"), "--use_cpu", "true", *extra]


# For runs whose test reads no eval figure: the end-of-run loss evals and the robustness
# generation cost ~12 s per run here (test_single_process_trains_and_writes_outputs covers them).
NO_EVAL = ("--loss_eval_at_end", "false", "--robustness_eval", "false")


def read_trace(d: Path, rank: int) -> list[dict]:
    return [json.loads(x) for x in (d / f"rank{rank}.jsonl").read_text().splitlines()]


@pytest.mark.heavy
def test_single_process_trains_and_writes_outputs(tiny_model_dir, tmp_path):
    """One run checks the outputs, the metrics and the robustness report (evaluated at step 3,
    step 6 and after training, as `robustness_every_eval` asks)."""
    from augment import robustness as rb
    out = tmp_path / "out"
    # The first 8 demo eval rows and their 16 held-out paraphrases: the same files in kind, and
    # each of the three evaluations costs a sixth of the full 144 prompts (~20 s each here).
    rows = (ROOT / "data/demo/eval.jsonl").read_text().splitlines()[:8]
    ids = {json.loads(r)["id"] for r in rows}
    paras = [p for p in (ROOT / "data/demo/eval_paraphrases.jsonl").read_text().splitlines()
             if json.loads(p)["source_id"] in ids]
    (tmp_path / "eval.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "eval_paraphrases.jsonl").write_text("\n".join(paras) + "\n")
    proc = subprocess.run(sft_cmd(tiny_model_dir, out, "--eval_strategy", "steps", "--eval_steps", "3",
                                  "--eval_dataset_name", str(tmp_path / "eval.jsonl"),
                                  "--eval_paraphrases_file", str(tmp_path / "eval_paraphrases.jsonl"),
                                  "--robustness_every_eval", "true",
                                  "--robustness_max_new_tokens", "3"),
                          cwd=ROOT, env=run_env(ACCELERATE_USE_CPU=1, AUGTUNE_TRACE_DIR=tmp_path / "trace"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for f in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json",
              "augmentation_summary.json", "augtune_config.yaml", "loss_by_source.png"):
        assert (out / f).exists(), f
    hist = json.loads((out / "trainer_state.json").read_text())["log_history"]
    keys = set().union(*hist)
    assert set(METRICS) <= keys, set(METRICS) - keys
    assert {"eval_loss", "eval_paraphrase_loss", "eval_paraphrase_gap"} <= keys
    # TRL's own metrics, from TRL's compute_loss, beside ours (train, eval and paraphrase eval)
    assert {"mean_token_accuracy", "entropy", "num_tokens", "eval_mean_token_accuracy",
            "eval_entropy", "eval_paraphrase_mean_token_accuracy", "eval_paraphrase_entropy"} <= keys
    summary = json.loads((out / "augmentation_summary.json").read_text())
    e0 = summary["epochs"][0]
    assert e0["augmented"] == 2 * e0["original"]          # 1:2 exactly, expand mode
    assert sum(e0["by_method"].values()) == e0["augmented"]
    assert set(summary["methods"]["templates"]) == {"generated", "accepted", "rejected", "failed"}
    assert summary["qc"] == {"mode": "project", "language": "en", "checks_off": []}
    # trainable parameters changed: LoRA B starts at zero
    from safetensors.torch import load_file
    lora_b = [v for k, v in load_file(out / "adapter_model.safetensors").items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)
    # aug_fraction logged is the share of augmented examples in the batches the window trained
    # on (plan indices >= the number of rows are variants), as the trace of those batches says
    trace, n_rows = read_trace(tmp_path / "trace", 0), e0["original"]
    logged_fr = [(h["step"], h["aug_fraction"]) for h in hist if "aug_fraction" in h]
    assert [s for s, _ in logged_fr] == [2, 4, 6]
    for step, frac in logged_fr:
        idx = [i for e in trace if step - 2 <= e["step"] < step for i in e["index"]]
        assert len(idx) == 8 and frac == pytest.approx(sum(i >= n_rows for i in idx) / 8)
    # over the three windows, 24 of the epoch's 72 planned examples: near the plan's 2/3
    assert 0.4 < sum(f for _, f in logged_fr) / 3 < 0.95
    assert "augtune: done" in proc.stdout and "eval_paraphrase_loss" in proc.stdout
    # robustness.json, and its figures in the log at each evaluation (by the callback), then
    # after training (through Trainer.log)
    rep = json.loads((out / "robustness.json").read_text())
    assert set(rep["figures"]) == set(rb.FIGURES)
    assert rep["counts"]["items"] == 8 and rep["counts"]["paraphrases"] == len(paras) == 16
    assert rep["metric"] == "token_f1"  # demo answers are free text
    logged = [h for h in hist if "robustness_avgp" in h]
    assert [h["step"] for h in logged] == [3, 6, 6]
    assert logged[-1]["robustness_avgp"] == pytest.approx(rep["figures"]["avgp"], abs=1e-6)
    assert logged[-1]["robustness_items"] == 8 and "robustness_seconds" in logged[-1]
    assert "robustness (token_f1, 8 items x 16 held-out paraphrases)" in proc.stdout


def test_padding_free_and_dft_train_through_the_entry_point(tiny_model_dir, tmp_path):
    out = tmp_path / "pf"
    # assistant_only_loss too: TRL alone refuses it for a dataset of row indices; ours masks
    proc = subprocess.run(sft_cmd(tiny_model_dir, out, "--padding_free", "true", "--loss_type", "dft",
                                  "--assistant_only_loss", "true", *NO_EVAL),
                          cwd=ROOT, env=run_env(ACCELERATE_USE_CPU=1), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hist = json.loads((out / "trainer_state.json").read_text())["log_history"]
    train = [h for h in hist if "loss" in h]
    assert train and all({"loss_original", "loss_templates", "mean_token_accuracy"} <= set(h) for h in train)
    assert all(h["loss"] < 0.1 for h in train)  # DFT: -log p * p, tiny for a random model
    cfg = (out / "augtune_config.yaml").read_text()
    assert "padding_free: true" in cfg and "loss_type: dft" in cfg and "assistant_only_loss: true" in cfg


@pytest.mark.heavy
def test_two_cpu_processes_are_synced_and_see_disjoint_entries(tiny_model_dir, tmp_path):
    out, trace = tmp_path / "out2", tmp_path / "trace"
    cmd = [str(ROOT / "launch.sh"), str(ROOT / "configs/tiny.yaml"), "--num_processes", "2",
           "--model_name_or_path", tiny_model_dir, "--output_dir", str(out),
           "--augment_cache", str(tmp_path / "cache.sqlite"), "--max_steps", "4", *NO_EVAL]
    proc = subprocess.run(cmd, cwd=ROOT, env=run_env(AUGTUNE_TRACE_DIR=trace), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0, p1 = (trace / "params0.txt").read_text(), (trace / "params1.txt").read_text()
    assert p0 == p1, "ranks ended with different parameters: the processes were not synced"
    # Only the main process opens the variant cache; rank 1 gets the tables by broadcast (the
    # audit hook records every sqlite3.connect the process really made).
    cache_path = str(tmp_path / "cache.sqlite")
    opens0 = (trace / "sqlite-opens-rank0.txt").read_text().split()
    opens1 = (trace / "sqlite-opens-rank1.txt").read_text().split()
    assert any(o.endswith("cache.sqlite") for o in opens0), opens0
    assert opens1 == [], f"rank 1 opened {opens1}; only rank 0 may open {cache_path}"
    r0, r1 = read_trace(trace, 0), read_trace(trace, 1)
    assert len(r0) == len(r1) == 4
    # Accelerate shards ONE global plan: with batch 4 on 2 ranks, global batch k is plan
    # entries [8k, 8k+8): rank 0 takes the first 4, rank 1 the next 4. Entries are positions in
    # the plan (a dataset index may repeat when a row reuses a variant), so compare positions.
    plan = json.loads((trace / "plan0.json").read_text())
    for k in range(4):
        assert r0[k]["index"] == plan[8 * k: 8 * k + 4]
        assert r1[k]["index"] == plan[8 * k + 4: 8 * k + 8]

    # The same global batches on ONE process (batch 8) log the same metrics: losses and the
    # per-source split are token-weighted and summed over ranks before dividing.
    one = tmp_path / "out1"
    proc = subprocess.run(sft_cmd(tiny_model_dir, one, "--max_steps", "4", "--per_device_train_batch_size", "8", *NO_EVAL),
                          cwd=ROOT, env=run_env(ACCELERATE_USE_CPU=1), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    h1 = [h for h in json.loads((one / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    h2 = [h for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert [h["step"] for h in h1] == [h["step"] for h in h2]
    for a, b in zip(h1, h2):
        for key in ("loss", "loss_original", "loss_augmented", "loss_templates", "aug_fraction", "aug_similarity_mean"):
            assert abs(a[key] - b[key]) <= 1e-3 * max(1.0, abs(a[key])), (key, a[key], b[key])


@pytest.mark.reliability
@pytest.mark.heavy
def test_kill_after_checkpoint_and_resume_replays_the_same_examples(tiny_model_dir, tmp_path):
    """SIGKILL after checkpoint-3, resume from "last": every step, before and after the kill,
    trained exactly the plan's batch (step s: plan entries [4s, 4s+4) at batch 4 on one process,
    as an unbroken run does; test_two_cpu_processes_are_synced_and_see_disjoint_entries checks
    that reading of the plan on an unbroken run), and the summary is the plan's epoch."""
    steps = ["--max_steps", "12", "--save_strategy", "steps", "--save_steps", "3", "--logging_steps", "1",
             *NO_EVAL]
    out, trace = tmp_path / "killed", tmp_path / "trace"
    env = run_env(ACCELERATE_USE_CPU=1, AUGTUNE_TRACE_DIR=trace)
    p = subprocess.Popen(sft_cmd(tiny_model_dir, out, *steps), cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if (out / "checkpoint-3" / "trainer_state.json").exists():
            break
        time.sleep(0.02)
    assert p.poll() is None, "run finished before it could be killed; make it slower"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "checkpoint-12").exists()
    killed = read_trace(trace, 0)
    from augment.trainer import last_complete_checkpoint
    saved = int(last_complete_checkpoint(out).rsplit("-", 1)[1])  # what "last" resumes from
    plan = json.loads((trace / "plan0.json").read_text())
    proc = subprocess.run(sft_cmd(tiny_model_dir, out, *steps, "--resume_from_checkpoint", "last"),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((trace / "plan0.json").read_text()) == plan  # the same plan after resume
    entries = read_trace(trace, 0)
    resumed = entries[len(killed):]
    assert saved >= 3 and [s["step"] for s in resumed] == list(range(saved, 12))  # from its checkpoint
    for s in killed + resumed:
        assert s["index"] == plan[4 * s["step"]: 4 * s["step"] + 4], f"step {s['step']} left the plan"
    n_rows = 24  # configs/tiny.yaml max_rows; plan entries below it are originals
    summary = json.loads((out / "augmentation_summary.json").read_text())
    assert [(e["epoch"], e["original"], e["augmented"], e["by_method"]) for e in summary["epochs"]] == [
        (0, sum(i < n_rows for i in plan), sum(i >= n_rows for i in plan),
         {"templates": sum(i >= n_rows for i in plan)})]
    # tiny.yaml's own eval files, read whole (the other tiny.yaml runs override or skip them)
    assert "augtune: 24 train rows, 48 eval rows, 96 held-out paraphrases" in proc.stdout
    # a resume whose plans would differ (here another ratio; in life a rebuild that changed the
    # accepted variants) is refused in one line instead of repeating and skipping examples
    other = subprocess.run(sft_cmd(tiny_model_dir, out, *steps, "--resume_from_checkpoint", "last",
                                   "--augmented_per_original", "1.0"),
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "cannot resume from" in other.stderr and "epoch plans differ" in other.stderr


@pytest.mark.slow  # the Alpaca loader is covered in test_data; this is the same launch path again
def test_alpaca_json_trains_with_no_other_change(tiny_model_dir, tmp_path):
    """A newcomer's Alpaca file (instruction/input/output, a JSON array) via --dataset_name,
    formatted as plain TRL formats prompt/completion pairs (pair_format: trl)."""
    rows = [{"instruction": f"Summarise note {i} for the team.", "input": f"Note {i}: the VPN moves to vpn{i}.example.com on Monday.",
             "output": f"The VPN address changes to vpn{i}.example.com on Monday."} for i in range(16)]
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(rows, indent=2))
    out = tmp_path / "alpaca-out"
    proc = subprocess.run(sft_cmd(tiny_model_dir, out, "--dataset_name", str(path), "--max_steps", "2",
                                  "--pair_format", "trl"),  # formatted as plain TRL would
                          cwd=ROOT, env=run_env(ACCELERATE_USE_CPU=1), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "16 train rows" in proc.stdout and (out / "adapter_model.safetensors").exists()


def test_templates_on_the_fly_train_without_a_cache_build(tiny_model_dir, tmp_path):
    out = tmp_path / "otf"
    proc = subprocess.run(sft_cmd(tiny_model_dir, out, "--templates_on_the_fly", "true", "--max_steps", "2", *NO_EVAL),
                          cwd=ROOT, env=run_env(ACCELERATE_USE_CPU=1), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "augtune build" not in proc.stderr            # nothing was generated or cached
    summary = json.loads((out / "augmentation_summary.json").read_text())
    e0 = summary["epochs"][0]
    assert e0["by_method"] == {"templates": e0["augmented"]} and e0["augmented"] == 2 * e0["original"]
    hist = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("loss_templates" in h for h in hist)


@pytest.mark.heavy
def test_chat_conversations_train_with_augmented_user_turns(tiny_model_dir, tmp_path):
    """configs/chat.yaml through launch.sh: multi-turn rows with system prompts, every user turn
    augmented; the epoch plan holds variants of earlier AND last turns; loss_<method> logged."""
    out, trace = tmp_path / "chat", tmp_path / "trace"
    cmd = [str(ROOT / "launch.sh"), str(ROOT / "configs/chat.yaml"),
           "--model_name_or_path", tiny_model_dir, "--output_dir", str(out),
           "--augment_cache", str(tmp_path / "chat.sqlite"), "--augment_methods", "templates",
           "--max_steps", "3", "--max_length", "256", "--logging_steps", "1", *NO_EVAL]
    proc = subprocess.run(cmd, cwd=ROOT, env=run_env(AUGTUNE_TRACE_DIR=trace), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "60 train rows" in proc.stdout
    hist = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("loss_templates" in h for h in hist) and any("loss_original" in h for h in hist)
    summary = json.loads((out / "augmentation_summary.json").read_text())
    e0 = summary["epochs"][0]
    assert e0["augmented"] == 2 * e0["original"] == 120
    # The plan's variants, resolved as training sees them: each changes exactly one user turn,
    # both earlier and last turns are among them, and the system prompt never changes.
    import sys as _sys
    _sys.path.insert(0, str(ROOT))
    from augment.conversation import TurnUnits
    from augment.cache import VariantCache
    from augment.config import DataConfig
    from augment.data import load_rows
    from augment.dataset import AugmentedDataset
    rows = load_rows(DataConfig(dataset_name=str(ROOT / "data/chat/train.jsonl"),
                                eval_dataset_name=str(ROOT / "data/chat/eval.jsonl")), seed=42).train
    units = TurnUnits.of(rows, "all")
    table = units.regroup(VariantCache(tmp_path / "chat.sqlite", readonly=True).load_table(
        units.rows, ["templates"], "project"))
    ds = AugmentedDataset(rows, table)
    plan = json.loads((trace / "plan0.json").read_text())
    turns_changed = set()
    for i in plan:
        item = ds[i]
        if item["source"] == "original":
            continue
        orig = [m[1] for m in rows[[r.id for r in rows].index(item["row_id"])].messages]
        now = [m["content"] for m in item["messages"]]
        changed = [k for k, (a, b) in enumerate(zip(orig, now)) if a != b]
        assert len(changed) == 1 and item["messages"][changed[0]]["role"] == "user"
        turns_changed.add("last" if changed[0] == len(orig) - 2 else "earlier")
    assert turns_changed == {"last", "earlier"}


def test_resume_skips_a_checkpoint_cut_off_by_a_kill(tmp_path, capsys):
    """A run killed while saving leaves checkpoint-N with a missing or cut-off trainer_state.json
    (seen in CI: transformers then failed on its JSON); resuming from "last" takes the newest
    complete one and says which it skipped."""
    from augment.trainer import last_complete_checkpoint
    for step, text in ((3, '{"global_step": 3}'), (6, '{"global_st'), (9, None), (12, None)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if text is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(text)
    (tmp_path / "checkpoint-12").rmdir()
    (tmp_path / "checkpoint-12").write_text("not a folder")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    err = capsys.readouterr().err
    assert "checkpoint-9: incomplete" in err and "checkpoint-6: incomplete" in err
    assert last_complete_checkpoint(tmp_path / "nothing-here") is None
