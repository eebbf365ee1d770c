"""Refusal examples from a file of harmful edge cases: (instruction, reason, alternative).

Why a file and fixed frames: the reason and the alternative are what a good refusal must
carry (the "why" and a useful way forward); they are the policy and belong to a human. The
frames only vary the wording, so the model learns the behaviour, not one canned sentence.
`reason` completes "as it ..." (a clause: "explains how to bypass a lock you do not own");
`alternative` is a noun phrase ("how to contact a locksmith").
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..data import _decode  # a file that is not UTF-8: an InputError naming file and line
from ..errors import CandidateError, InputError
from ..types import Candidate, Request, Result, Row
from .jsonlist import parse_string_list
from .paraphrase import build_prompt as paraphrase_prompt
from .replies import check_not_cut

# Each frame keeps the two facts: why not, and what instead. Append only (ids are indices).
FRAMES = [
    "I can't help with that request as it {reason}. I'd be happy to help with {alternative} "
    "instead.",
    "I'm sorry, but I can't assist with this because it {reason}. If it's useful, I can help "
    "with {alternative} instead.",
    "I won't be able to help with that, since it {reason}. I could help with {alternative}, "
    "though.",
    "Sorry, I can't do that: this request {reason}. I'd be glad to help with {alternative} "
    "instead.",
    "I have to decline this one because it {reason}. Could I help with {alternative} instead?",
    "That's not something I can help with, as it {reason}. I'm happy to help with "
    "{alternative} instead.",
    "I can't provide that because it {reason}. What I can do is help with {alternative}.",
    "Unfortunately I can't help with this request, since it {reason}. I'm glad to help with "
    "{alternative} if that works for you.",
]


def _clean_reason(reason: str) -> str:
    r = reason.strip().rstrip(".!").strip()
    r = re.sub(r"(?i)^(as|because|since)\s+", "", r)
    r = re.sub(r"(?i)^(it|this request|this)\s+", "", r)
    if r[:1].isupper() and r[1:2].islower():  # "Could be used ..." -> "could be used ..."
        r = r[0].lower() + r[1:]
    return r


def _clean_alternative(alt: str) -> str:
    a = alt.strip().rstrip(".!").strip()
    a = re.sub(r"(?i)^(help with|with)\s+", "", a)
    if a[:1].isupper() and a[1:2].islower() and a.split()[0].lower() in {
            "a", "an", "the", "general", "information", "how", "some", "learning", "safe"}:
        a = a[0].lower() + a[1:]
    return a


def render_refusal(reason: str, alternative: str, frame: int = 0) -> str:
    """One refusal in frame `frame`.

    >>> render_refusal("could be used to hurt someone", "first-aid basics")
    "I can't help with that request as it could be used to hurt someone. I'd be happy to help with first-aid basics instead."
    """
    return FRAMES[frame].format(reason=_clean_reason(reason),
                                alternative=_clean_alternative(alternative))


def choose_frames(instruction: str, n: int, seed: int) -> list[int]:
    def rank(i):
        return hashlib.sha256(f"{seed}\x00{instruction}\x00refusal-frame-{i}".encode()).digest()
    return sorted(range(len(FRAMES)), key=rank)[:n]


def load_harmful_cases(path) -> list[tuple[Row, str, str]]:
    """Read JSONL lines {instruction, reason, alternative[, id]} -> (Row, reason, alternative).

    `id` defaults to "refusal-<line>". Every problem names file:line and the field.
    """
    cases = []
    seen = set()
    try:
        text = _decode(Path(path))
    except OSError as e:
        raise InputError(f"cannot read harmful cases ({e.strerror})", file=str(path),
                         fix="Set refusals_file to a JSONL of {instruction, reason, alternative}")
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise InputError(f"not valid JSON ({e.msg})", file=str(path), line=lineno,
                             fix="Each line must be one JSON object")
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", file=str(path), line=lineno)
        for key in ("instruction", "reason", "alternative"):
            v = obj.get(key)
            if not isinstance(v, str) or not v.strip():
                raise InputError("missing or empty", file=str(path), line=lineno, field=key,
                                 fix="Give instruction, reason (completes 'as it ...') "
                                     "and alternative (a noun phrase)")
        rid = str(obj.get("id", f"refusal-{lineno}"))
        if rid in seen:
            raise InputError(f"duplicate id {rid!r}", file=str(path), line=lineno, field="id")
        seen.add(rid)
        cases.append((Row(rid, obj["instruction"].strip(), ""), obj["reason"].strip(),
                      obj["alternative"].strip()))
    if not cases:
        raise InputError("no harmful cases in the file", file=str(path))
    return cases


class Refusals:
    name = "refusals"
    field = "refusal"
    prompt_version = "refusals-v1"

    def __init__(self, cfg, backend=None):
        """`backend` is an LLMBackend when cfg.refusals_paraphrase, else None."""
        self.cfg = cfg
        self.backend = backend
        self.n = cfg.refusals_n
        self.seed = cfg.augment_seed if cfg.augment_seed is not None else 0
        self.paraphrase = bool(cfg.refusals_paraphrase)
        if self.paraphrase and backend is None:
            raise ValueError("refusals_paraphrase needs an LLM backend")

    def load_cases(self) -> list[tuple[Row, str, str]]:
        return load_harmful_cases(self.cfg.refusals_file)

    def requests(self, rows) -> list[Request]:
        """`rows` are Row(id, prompt=instruction, completion="") with reason/alternative given
        either as (Row, reason, alternative) tuples (what `load_harmful_cases` returns) or as
        Rows whose reason/alternative come from the file by id."""
        out = []
        for item in rows:
            row, reason, alternative = item if isinstance(item, tuple) else \
                self._lookup(item)
            if self.paraphrase:
                out.append(Request.make(
                    self.name, self.field, row.prompt, self.backend.name, self.backend.model,
                    f"{self.prompt_version}+paraphrase-v1", n=self.n, seed=self.seed,
                    reason=reason, alternative=alternative, paraphrase_n=self.cfg.paraphrase_n,
                    temperature=self.cfg.llm_temperature))
            else:
                out.append(Request.make(self.name, self.field, row.prompt, "rules", "",
                                        self.prompt_version, n=self.n, seed=self.seed,
                                        reason=reason, alternative=alternative))
        return out

    def _lookup(self, row: Row):
        if not hasattr(self, "_by_id"):
            self._by_id = {r.id: (r, rs, alt) for r, rs, alt in self.load_cases()}
        if row.id not in self._by_id:
            raise InputError(f"harmful case id {row.id!r} is not in refusals_file",
                             file=self.cfg.refusals_file)
        return self._by_id[row.id]

    async def run(self, request: Request) -> Result:
        p = request.param_dict
        prompts = [request.source]
        result = Result([])
        if self.paraphrase:
            items, result = await self._paraphrases(request, p)
            prompts += items
        for k, prompt in enumerate(prompts):
            for frame in choose_frames(prompt, p["n"], p["seed"]):
                result.candidates.append(Candidate(
                    render_refusal(p["reason"], p["alternative"], frame), prompt=prompt,
                    meta={"frame": frame, "prompt_paraphrased": k > 0,
                          "reason": p["reason"], "alternative": p["alternative"]}))
        if not result.candidates:
            err = CandidateError("no refusal produced; set refusals_n of at least 1")
            err.completion = result  # the paraphrase call's spend (build._failure_spend reads it)
            raise err
        return result

    async def _paraphrases(self, request: Request, p: dict) -> tuple[list[str], Result]:
        """(paraphrased instructions, a Result holding the call's spend and problems).

        A reply that is no paraphrase (a model often declines to reword a harmful request, or
        the reply was cut) costs the paraphrases only: the refusals of the instruction itself
        need no LLM and are kept, with the reason in `problems`, and the call's spend is
        recorded with them instead of vanishing with an exception."""
        system, user = paraphrase_prompt(request.source, p["paraphrase_n"])
        max_tokens = self.cfg.llm_max_tokens
        comp = await self.backend.complete(system, user, max_tokens=max_tokens,
                                           temperature=p["temperature"],
                                           seed=int(request.key[:8], 16))
        result = Result([], comp.input_tokens, comp.output_tokens, comp.cost_usd, comp.retries)
        try:
            check_not_cut(comp, max_tokens, max_tokens)
            items, problems = parse_string_list(comp.text, p["paraphrase_n"], request.source)
        except CandidateError as e:
            result.problems.append(f"paraphrase failed, kept the original instruction only: {e}")
            return [], result
        result.problems.extend(f"paraphrase: {x}" for x in problems)
        return items, result

    def estimate(self, request: Request) -> tuple[int, int]:
        if not self.paraphrase:
            return (0, 0)
        from .paraphrase import estimate_tokens_for
        return estimate_tokens_for(request.source, request.param_dict["paraphrase_n"])
