"""bench/run.py end to end at smoke sizes: the figures run and results.json keeps its format."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_env

KEYS = {"value", "unit", "baseline", "target", "meets_target", "details"}


def test_bench_smoke_writes_results_json(tmp_path):
    out = tmp_path / "results.json"
    figures = ["qc_overhead_vs_encode", "sampler_plan_vs_permutation"]  # registry order
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--only",
                           ",".join(reversed(figures)), "--out", str(out)], cwd=ROOT, env=run_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert list(res) == ["_machine", *figures]  # machine first, then figures in registry order
    m = res["_machine"]
    assert m["quick"] is True and m["smoke"] is True and m["cpu_count"] >= 1
    assert {"cpu_model", "torch", "gpu", "date"} <= set(m)
    for name in figures:
        e = res[name]
        assert set(e) == KEYS, name
        assert "error" not in e["details"], e["details"].get("error")
        assert e["details"]["smoke"] is True, name  # each figure says so, not only _machine
        assert isinstance(e["value"], float) and e["value"] > 0, (name, e["value"])
        assert e["meets_target"] in (True, False)
    samp = res["sampler_plan_vs_permutation"]["details"]
    assert samp["expand"]["plan_length"] == 3 * samp["rows"]       # n originals + 2n variants
    assert samp["replace"]["plan_length"] == samp["rows"]
    assert res["sampler_plan_vs_permutation"]["value"] == samp["expand"]["ratio"]
    assert res["qc_overhead_vs_encode"]["details"]["distinct_texts"] > 0
    # the readable table is printed, with every figure
    assert all(f in proc.stdout for f in figures)

    # --only merges: a second run of one figure keeps the other entry
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--only",
                           "sampler_plan_vs_permutation", "--out", str(out)], cwd=ROOT,
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(json.loads(out.read_text())) == {"_machine", *figures}


def test_unknown_figure_is_refused():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--only", "nope"],
                          cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown figure" in proc.stderr


@pytest.mark.slow  # ~1 min of training in child processes; `python bench/run.py` runs it for real
def test_trl_comparison_and_padding_free_figures_at_smoke_sizes(tmp_path):
    """The figures against plain TRL and padded batches run their child processes and report
    per-side measurements (numbers at smoke sizes mean nothing; bench/results.json has real ones)."""
    out = tmp_path / "results.json"
    figures = ["peak_memory_vs_trl", "step_time_vs_trl", "padding_free_tokens_per_s"]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--only",
                           ",".join(figures), "--out", str(out)], cwd=ROOT, env=run_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    for name in figures:
        assert set(res[name]) == KEYS, name
        assert "error" not in res[name]["details"], res[name]["details"].get("error")
        assert res[name]["value"] > 0
    mem = res["peak_memory_vs_trl"]["details"]
    assert all(x > 0 for x in mem["trl_step_peak_mib"] + mem["augtune_step_peak_mib"])
    assert res["peak_memory_vs_trl"]["value"] == max(mem["ratios"])
    pf = res["padding_free_tokens_per_s"]["details"]
    assert 0 < pf["padded_batch_fill"][0] < 1  # demo lengths differ: padded batches carry padding


def test_scratch_dirs_of_the_figures_are_removed_when_the_bench_exits(tmp_path):
    code = ("from bench.harness import scratch_dir; p = scratch_dir('augtune-bench-t-'); "
            "(p / 'run.log').write_text('x'); print(p)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                          env={**run_env(), "TMPDIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_smoke_figures_never_reach_the_real_results_file():
    """--smoke wrote its meaningless figures into bench/results.json by default, marked only in
    a _machine entry that the next --only run replaced: it now needs --out, and each figure says
    it was a smoke run."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--only",
                           "sampler_plan_vs_permutation"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "give --out FILE" in proc.stderr
