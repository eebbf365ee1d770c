"""One QC config: the run's AugmentConfig reaches the checker whole; the fingerprint follows the
rules' code and the settings; build and rescore share one judging function; language."""

from __future__ import annotations

import shutil

import pytest

from augment.config import AugmentConfig
from augment.errors import ConfigError
from augment.qc import checker as qc_checker
from augment.quality import (RUN_FIELDS, QualityChecker, QualityConfig, judge_candidates,
                             make_checker)


@pytest.fixture(scope="module")
def model():
    return QualityChecker(QualityConfig()).model


BRIEF_SOURCE = (
    "To reset your router, unplug it from the wall and wait a little before you plug it back in. "
    "Wait until the light on the front turns green, which usually takes about two minutes. If the "
    "light stays orange, press and hold the small reset button on the back with a paper clip "
    "until the light blinks. This restores the factory settings, so you will need to set up your "
    "network name and password again from the setup page in your browser. Write the new password "
    "down somewhere safe. If the router still does not connect after that, restart your modem as "
    "well, check that every cable is firmly seated, and then call our support line, where a "
    "technician can check the connection from our side and book a visit if needed.")
BRIEF_75 = (
    "Unplug the router from the wall, wait a little, and plug it back in; the light should turn green in about "
    "two minutes. If it stays orange, hold the reset button on the back until the light blinks, "
    "then set up your network name and password again from the setup page. If it still does not "
    "connect, restart the modem, check every cable, and call our support line so a technician can "
    "check the connection.")


def test_run_config_reaches_the_checker_whole(model, tmp_path):
    assert len(BRIEF_75.split()) == 75
    default = make_checker(AugmentConfig(), model=model)
    wide = make_checker(AugmentConfig(brief_max_words=80), model=model)
    assert wide.config.brief_max_words == 80
    r = wide.measure(BRIEF_SOURCE, BRIEF_75, "outputs:brief")
    assert r["is_valid"], r["reasons"]  # a 75-word brief passes a budget of 80
    r = default.measure(BRIEF_SOURCE, BRIEF_75, "outputs:brief")
    assert r["reasons"] == ["brief has 75 words > budget 50"], r["reasons"]
    assert wide.fingerprint() != default.fingerprint()
    # the same through a YAML config, as a run reads it
    from augment.cli import parse_config
    from augment.config import DataConfig
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text("brief_max_words: 80\nqc_judge: none\nlanguage: en\n")
    _, aug = parse_config(["--config", str(yaml_path)], (DataConfig, AugmentConfig))
    from_yaml = make_checker(aug, model=model)
    assert from_yaml.config.brief_max_words == 80 and from_yaml.config.judge == "none"
    assert from_yaml.fingerprint() == make_checker(AugmentConfig(brief_max_words=80, qc_judge="none"),
                                                   model=model).fingerprint()
    r = from_yaml.measure(BRIEF_SOURCE, BRIEF_75, "outputs:brief")
    assert r["is_valid"], r["reasons"]
    # every QualityConfig knob is a field of the run config, with its help text
    fields = AugmentConfig.__dataclass_fields__
    for run_name, qc_name in RUN_FIELDS.items():
        assert run_name in fields and fields[run_name].metadata.get("help"), run_name
        assert getattr(AugmentConfig(), run_name) == getattr(QualityConfig(), qc_name)
    cfg = AugmentConfig(qc="seed", qc_sim_min=0.6, qc_judge="none", qc_refusal_max_words=90)
    q = QualityConfig.from_run(cfg)
    assert (q.mode, q.sim_min, q.judge, q.refusal_max_words) == ("seed", 0.6, "none", 90)
    assert QualityChecker(cfg, model=model).config == q  # the checker takes the run config whole


def test_qc_fields_are_validated_in_the_run_config():
    with pytest.raises(ConfigError, match="sim_min"):
        AugmentConfig(qc_sim_min=0.99)
    with pytest.raises(ConfigError, match="qc_judge"):
        AugmentConfig(qc_judge="oracle")
    with pytest.raises(ConfigError, match="judge_band"):
        AugmentConfig(qc_judge_band=[0.6, 0.2])
    with pytest.raises(ConfigError, match="language"):
        AugmentConfig(language="english")
    with pytest.raises(ConfigError, match="templates_sim_max"):
        AugmentConfig(qc_templates_sim_max=-5.0)   # would reject every template
    assert AugmentConfig(qc_templates_sim_max=0.99).qc_templates_sim_max == 0.99


def test_fingerprint_follows_rule_code_not_comments(tmp_path, monkeypatch, model):
    base = QualityChecker(QualityConfig(judge="none"), model=model).fingerprint()
    real = qc_checker._HERE
    pkg = tmp_path / "qc"
    shutil.copytree(real, pkg)
    monkeypatch.setattr(qc_checker, "_HERE", pkg)

    def fp():
        monkeypatch.setattr(qc_checker, "_RULES_DIGEST", None)
        return QualityChecker(QualityConfig(judge="none"), model=model).fingerprint()

    assert fp() == base
    words = pkg / "words.py"
    words.write_text(words.read_text() + "\n# a comment only\n\n")
    assert fp() == base  # a reworded comment does not invalidate every cache
    words.write_text(words.read_text().replace('("hire", "fire"),', '("hire", "fire"), ("hot", "cool"),'))
    assert fp() != base  # a new antonym pair: verdicts may differ
    shutil.copy(real / "words.py", words)
    assert fp() == base
    rules = pkg / "rules.py"
    rules.write_text(rules.read_text().replace("cfg.minimal_edit_min_sim - 0.05", "cfg.minimal_edit_min_sim - 0.04"))
    assert fp() != base
    # settings count, where the model runs does not
    assert QualityChecker(QualityConfig(judge="none", sim_min=0.65)).fingerprint() != base
    monkeypatch.setattr(qc_checker, "_RULES_DIGEST", None)
    monkeypatch.setattr(qc_checker, "_HERE", real)
    assert QualityChecker(QualityConfig(judge="none", batch_size=8)).fingerprint() == base
    # settings.py's verdict constants count too: the seed window, the paraphrase-like methods
    monkeypatch.setattr(qc_checker, "SEED_SIM_MIN", 0.65)
    assert QualityChecker(QualityConfig(judge="none")).fingerprint() != base
    monkeypatch.setattr(qc_checker, "SEED_SIM_MIN", 0.70)
    assert QualityChecker(QualityConfig(judge="none")).fingerprint() == base
    monkeypatch.setattr(qc_checker, "PARAPHRASE_LIKE", ("paraphrase", "backtranslate"))
    assert QualityChecker(QualityConfig(judge="none")).fingerprint() != base


def test_judge_candidates_is_score_pairs_per_method_and_group(model):
    chk = QualityChecker(QualityConfig(), model=model)
    src = "How do I cancel my subscription?"
    resp = ("To cancel, open Settings and choose Billing. Then press Cancel plan and confirm by "
            "e-mail. Your access stays until the end of the period.")
    items = [
        {"source": src, "text": "What are the steps to cancel my subscription?", "method": "paraphrase", "group": "r1"},
        {"source": resp, "text": "- Open Settings, then Billing.\n- Press Cancel plan.", "method": "outputs",
         "params": {"variant": "brief"}, "group": "r2"},
        {"source": src, "text": "What are the steps to cancel my subscription ?", "method": "paraphrase", "group": "r1"},
        {"source": src, "text": "Is there a student discount?", "method": "paraphrase", "group": "r3"},
    ]
    out = judge_candidates(chk, items, other_originals=[src, "Is there a student discount?"])
    assert out[0]["is_valid"]
    assert out[1]["method"] == "outputs:brief"  # the request's params reach the rules
    assert any("near-duplicate of variant 0" in r for r in out[2]["reasons"])
    assert any("another row's original" in r for r in out[3]["reasons"])
    direct = chk.score_pairs([src, src], [items[0]["text"], items[2]["text"]], "paraphrase",
                             group_ids=["r1", "r1"])
    assert [d["reasons"] for d in direct] == [out[0]["reasons"], out[2]["reasons"]]


def test_other_language_switches_english_checks_off(model):
    de = QualityChecker(QualityConfig(language="de"), model=model)
    r = de.measure("Wie kündige ich mein Abo für 12 Monate?", "Wie kündige ich mein Abo für 24 Monate?")
    assert r["checks_off"] and "polarity" in r["checks_off"]
    assert any("number 12 missing" in x for x in r["reasons"])  # digits are language-neutral
    r = de.measure("Wie kündige ich mein Abo?", "Wie kündige ich mein Abo nicht?")
    assert not any("negation" in x for x in r["reasons"])  # the English negator list is off
    en = QualityChecker(QualityConfig(), model=model).measure("How do I cancel?", "How do I not cancel?")
    assert "checks_off" not in en
    with pytest.raises(ConfigError, match="templates are English only"):
        AugmentConfig(language="de", augment_methods=["templates"])
    AugmentConfig(language="de", augment_methods=["paraphrase"])  # allowed, checks off


def test_a_build_in_another_language_says_which_checks_are_off(tmp_path, capsys):
    """The report says so: the build's log line and `BuildReport.qc` (which the training run's
    augmentation_summary.json repeats) name the English-only checks a language switched off."""
    from augment.build import build_cache, qc_summary
    from augment.config import DataConfig
    from augment.types import Row
    rows = [Row("r1", "Wie kündige ich mein Abo?", "Unter Einstellungen > Abo.")]
    cfg = AugmentConfig(language="de", augment_methods=["paraphrase"], qc_judge="llm",
                        augment_cache=str(tmp_path / "c.sqlite"))
    rep = build_cache(DataConfig(), cfg, rows, progress=True, dry_run=True)
    assert rep.qc["language"] == "de" and {"polarity", "judge"} <= set(rep.qc["checks_off"])
    err = capsys.readouterr().err
    assert "language=de: the English-only QC checks are off (polarity" in err and "judge" in err
    from augment.build import LLM_JUDGE_ROW
    assert LLM_JUDGE_ROW not in rep.per_method   # the LLM judge is off with them: nothing to count
    assert qc_summary(AugmentConfig()) == {"mode": "project", "language": "en", "checks_off": []}
    build_cache(DataConfig(), AugmentConfig(augment_methods=["paraphrase"],
                                            augment_cache=str(tmp_path / "d.sqlite")),
                rows, progress=True, dry_run=True)
    assert "English-only" not in capsys.readouterr().err


def test_build_and_rescore_judge_identically(tmp_path):
    """A build's verdicts and a full rescore of the same cache under the same run config agree
    on every candidate (both go through judge_candidates with the run's whole config), including
    outputs variants judged by their form (brief/bullets) and a non-default brief budget."""
    from augment.build import build_cache, make_checker as build_checker
    from augment.cache import VariantCache
    from augment.config import DataConfig
    from augment.types import Row
    rows = [Row(f"r{i}", f"Please explain how to export my invoices from account {i} as PDF files.",
                "Open Settings > Billing and choose Export. Pick PDF as the format and the months "
                "you want. The files arrive by email within ten minutes. Each invoice shows the VAT "
                "number you entered.") for i in range(4)]
    cfg = AugmentConfig(augment_methods=["templates", "outputs"], augment_cache=str(tmp_path / "c.sqlite"),
                        brief_max_words=20, qc="project")
    build_cache(DataConfig(), cfg, rows, progress=False)
    cache = VariantCache(cfg.augment_cache)
    q = "SELECT id, accepted_project, reasons_json FROM variants ORDER BY id"
    built = cache._conn().execute(q).fetchall()
    assert len(built) > 8
    assert cache.rescore(build_checker(cfg), only_missing=False) == len(built)
    assert cache._conn().execute(q).fetchall() == built
    # the rescore really judges: a budget below the briefs' length rejects them
    from dataclasses import replace
    cache.rescore(build_checker(replace(cfg, brief_max_words=3)), only_missing=False)
    assert cache._conn().execute(q).fetchall() != built
