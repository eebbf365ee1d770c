"""Quality control for augmented training text, split by job:

- `settings.py`  QualityConfig: every QC knob, once (the run config exposes them as `qc_*`)
- `words.py`     English word lists and patterns (data only)
- `features.py`  cheap per-text features the rules read
- `rules.py`     the rules: features of a pair -> reasons, per method
- `embed.py`     the sentence encoder, loaded once, long texts chunked
- `checker.py`   QualityChecker, make_checker(run_cfg), judge_candidates, the fingerprint
- `judges.py`    the offline judge head for instruction-level changes
- `llm_judge.py` the LLM judge for the borderline band (qc_judge: llm)
- `train_judge.py` `python -m augment.qc.train_judge`: generate pairs, train judge_head.npz

`augment.quality` is the stable front door (`score_pairs`, `measure_augmentation_quality`).
"""
