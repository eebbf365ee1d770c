"""augtune: data augmentation and its quality control inside a TRL fine-tuning run.

The public API, for your own TRL script (see the README's "Use it in your own TRL script"):

    prepare(dataset, AugmentConfig(...), seed=...)  -> AugmentedData   build, QC, load, plan
    AugmentedSFTTrainer(model=..., args=SFTConfig(...), train_dataset=data)   TRL's SFTTrainer + augmentation

and the pieces underneath, for those who wire things themselves: `AugmentConfig` and
`DataConfig` (every knob, with help text), `load_rows`, `build_cache`, `VariantCache`,
`make_checker` / `score_pairs` (the QC), `RatioSampler`, `AugmentedDataset`,
`AugmentingCollator`. Names are imported on first use, so `import augment` stays cheap (no torch,
no TRL until you touch a name that needs them).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AugmentConfig": "augment.config",
    "DataConfig": "augment.config",
    "prepare": "augment.pipeline",
    "AugmentedData": "augment.pipeline",
    "AugmentedSFTTrainer": "augment.trainer",
    "load_rows": "augment.data",
    "build_cache": "augment.build",
    "VariantCache": "augment.cache",
    "make_checker": "augment.quality",
    "score_pairs": "augment.quality",
    "measure_augmentation_quality": "augment.quality",
    "RatioSampler": "augment.sampler",
    "AugmentedDataset": "augment.dataset",
    "AugmentingCollator": "augment.collator",
    "Row": "augment.types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'augment' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
