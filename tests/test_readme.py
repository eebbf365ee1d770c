"""The README's promises: exactly two set-up commands, CI runs the second, the file tree is true."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_two_commands_and_ci_runs_the_test_command():
    block = README.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln.split("#")[0].strip() for ln in block.strip().splitlines()]
    assert commands == ["./launch.sh", "./launch.sh --tests"]
    ci = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert ci == ["./launch.sh --tests"]


def test_launch_help_and_bad_arguments():
    out = subprocess.run([str(ROOT / "launch.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--num_processes" in out.stdout
    bad = subprocess.run([str(ROOT / "launch.sh"), "configs/nope.yaml"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "config file 'configs/nope.yaml' not found" in bad.stderr


def _tree_paths() -> list[str]:
    block = README.split("## Files", 1)[1].split("```", 2)[1]
    paths, parent = [], ""
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m or line.strip().startswith(("test_", "and ")):
            continue
        indent, name = len(m.group(1)), m.group(2)
        if indent == 0:
            parent = name if name.endswith("/") else ""
            paths.append(name)
        else:
            paths.append(parent + name)
    return paths


def test_file_tree_is_true():
    paths = _tree_paths()
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"README lists files that do not exist: {missing}"
    listed = set(paths)
    for pkg in ("augment", "train", "bench"):
        for f in (ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(ROOT).as_posix()
            if f.name == "__init__.py" and rel not in listed and pkg != "augment":
                continue
            if f.name == "__init__.py" and f.parent.name in ("augment", "bench", "train"):
                continue
            assert rel in listed, f"{rel} is not in the README's file tree"


def test_demo_command_on_bad_rows_fails_fast_with_one_line(tmp_path):
    """As a new user would: the README's demo command pointed at a file of bad rows stops
    before any model is loaded, with one line and no traceback (accelerate's included)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "completion": "fine"}\n{"prompt": "no completion"}\nnot json\n')
    for extra in ([], ["--num_processes", "2"]):
        out = subprocess.run([str(ROOT / "launch.sh"), "configs/demo.yaml", "--dataset_name", str(bad),
                              "--output_dir", str(tmp_path / "o"), *extra], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0
        assert "Traceback" not in out.stderr + out.stdout, out.stderr[-2000:]
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert lines == [f"augtune: error: {bad}:2, field 'completion': missing. Every row needs it "
                         "(or use skip_bad_rows: true to skip such rows)"], lines


@pytest.mark.heavy
def test_own_script_example_runs_as_written(tmp_path):
    """The README's "Use it in your own TRL script" block, run exactly as written (from a folder
    that sees the repo's data/, so its outputs stay out of the repo): it builds variants, trains
    with the embedded SmolLM2 and writes the adapter, TRL's and augtune's metrics, the summary."""
    import json
    import sys
    block = README.split("## Use it in your own TRL script", 1)[1].split("```python", 1)[1]
    script = block.split("```", 1)[0]
    assert len(script.strip().splitlines()) <= 22
    (tmp_path / "data").symlink_to(ROOT / "data")
    (tmp_path / "own.py").write_text(script)
    from tests.conftest import run_env
    proc = subprocess.run([sys.executable, "own.py"], cwd=tmp_path, env=run_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "outputs/my-script"
    assert (out / "adapter_model.safetensors").exists()
    summary = json.loads((out / "augmentation_summary.json").read_text())
    e0 = summary["epochs"][0]
    assert e0["augmented"] == 2 * e0["original"] and set(e0["by_method"]) <= {"templates", "backtranslate"}
    hist = json.loads((out / "trainer_state.json").read_text())["log_history"]
    keys = set().union(*hist)
    assert {"loss", "loss_original", "loss_augmented", "aug_fraction", "mean_token_accuracy"} <= keys
    assert keys & {"loss_templates", "loss_backtranslate"}
    assert (tmp_path / "cache/my-script.sqlite").exists()


def test_the_distribution_installs_the_library_and_no_train_module(tmp_path):
    """What `pip install .` would install: the wheel built from pyproject.toml holds the
    `augment` package (with the QC judge's data file) and no top-level `train` module."""
    import shutil
    import sys
    import zipfile
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("augment", "train"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("from setuptools import build_meta; import sys; "
            "print(build_meta.build_wheel(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=src,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = tmp_path / "dist" / proc.stdout.strip().splitlines()[-1]
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert "augment" in top and "train" not in top, sorted(top)
    assert {t for t in top if not t.endswith(".dist-info")} == {"augment"}
    assert "augment/qc/judge_head.npz" in names and "augment/trainer.py" in names
    assert "augment/qc/judge_cross.npz" in names
