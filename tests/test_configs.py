"""Every shipped YAML config parses with the real parser (recursive: ablation sweeps included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from augment.cli import parse_config
from augment.errors import ConfigError
from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def _types():
    from trl import ModelConfig, SFTConfig

    from augment.config import AugmentConfig, DataConfig
    return (DataConfig, AugmentConfig, SFTConfig, ModelConfig)


def test_there_are_configs():
    assert any(p.name == "demo.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_parses(path: Path):
    text = path.read_text()
    assert text.lstrip().startswith("#"), "each config opens with a comment saying what it is for"
    if "expect-error:" in text:
        # Configs kept to show a rejected setting state the message they must fail with.
        expected = text.split("expect-error:", 1)[1].splitlines()[0].strip()
        with pytest.raises(ConfigError, match=expected):
            parse_config(["--config", str(path), "--use_cpu", "true"], _types())
        return
    data, aug, sft, model = parse_config(["--config", str(path), "--use_cpu", "true"], _types())
    assert sft.output_dir and model.model_name_or_path
    for f in (data.dataset_name, data.eval_dataset_name, data.eval_paraphrases_file, aug.refusals_file):
        if f:
            assert (ROOT / f).exists(), f"{path.name} names {f}, which does not exist"


def test_help_prints_every_field_including_help_with_a_percent_sign(capsys):
    """argparse formats help text with %: a field's "keep 87% of ..." made `--help` of every
    entry point fail ("%o format: an integer is required") until the parser escaped it."""
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--help"], _types())
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "keep 87% of" in " ".join(out.split()) and "--qc_judge_band" in out
