"""launch.sh's accelerate command line, seen through a stub `accelerate` in a stand-in venv
(the real interpreter behind it, so the preflight runs for real; nothing trains)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def venv(tmp_path):
    """A venv whose python is this one and whose accelerate prints its arguments, one a line."""
    v = tmp_path / "venv"
    (v / "bin").mkdir(parents=True)
    (v / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (v / "bin" / "accelerate").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    for f in ("python", "accelerate"):
        (v / "bin" / f).chmod(0o755)
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (v / ".augtune-stamp").write_text(stamp + "\n")
    return v


def launch(venv, *args, cwd=ROOT):
    env = {**os.environ, "AUGTUNE_VENV": str(venv), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(ROOT / "launch.sh"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_an_accelerate_config_keeps_its_process_count(venv, tmp_path):
    """accelerate takes num_processes from --config_file only where the command line sets none:
    launch.sh always passed --num_processes 1, so every FSDP, DeepSpeed or multi-node config
    ran as one process. Given on the command line, it is passed."""
    acc = tmp_path / "acc.yaml"
    acc.write_text("num_processes: 2\n")
    out = launch(venv, "configs/tiny.yaml", "--config_file", str(acc))
    assert out.returncode == 0, out.stderr
    args = out.stdout.split("\n")
    assert "--num_processes" not in args and str(acc) in args
    out = launch(venv, "configs/tiny.yaml", f"--config_file={acc}", "--num_processes=2")
    args = out.stdout.split("\n")
    assert out.returncode == 0 and args[args.index("--num_processes") + 1] == "2"


def test_paths_from_the_callers_folder_and_one_line_argument_errors(venv, tmp_path):
    """A config named relative to where you stand was looked for in the repo; an accelerate
    flag without its value ended in bash's 'unbound variable'."""
    cfg = tmp_path / "mine.yaml"
    cfg.write_text((ROOT / "configs" / "tiny.yaml").read_text())
    out = launch(venv, "mine.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(cfg) in out.stdout.split("\n")
    for flag in ("--num_processes", "--config_file"):
        out = launch(venv, "configs/tiny.yaml", flag)
        assert out.returncode == 2 and out.stderr.strip() == f"augtune: error: {flag} needs a value."
    out = launch(venv, "configs/tiny.yaml")
    args = out.stdout.split("\n")
    assert out.returncode == 0 and args[args.index("--num_processes") + 1] == "1"
    assert "--mixed_precision" in args  # no GPU for torch here: the CPU path
