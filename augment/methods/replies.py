"""The one check every LLM reply passes before it becomes a variant: was it cut at max_tokens?

Why: a reply cut short reads like a whole one (a bulleted list missing its last points, a
back-translation that stops mid-word, a paraphrase without its last sentence) and would train
the model on half an answer while the build reports success. The backends say when they
stopped at the limit (`Completion.stop_reason`); the method turns that into a CandidateError
carrying the spend, as for any unusable reply.
"""

from __future__ import annotations

from ..errors import CandidateError
from ..types import is_cut


def check_not_cut(comp, max_tokens: int, configured: int, cap_from: str = "") -> None:
    """Raise CandidateError (with `.completion`, the spend) when `comp` stopped at max_tokens.

    `max_tokens` is what the call asked for and `configured` the config's llm_max_tokens. A cap
    set below it from the task (`cap_from`: "the source's length") is not fixed by raising
    llm_max_tokens: the reply ran far past what was asked, so the message says that instead.
    """
    if not is_cut(comp):
        return
    if max_tokens >= configured or not cap_from:
        msg = f"reply cut at max_tokens={max_tokens}; raise llm_max_tokens"
    else:
        msg = (f"reply cut at max_tokens={max_tokens}, the cap set from {cap_from}: the model "
               "wrote far more than asked")
    err = CandidateError(msg)
    err.completion = comp  # the tokens were billed even though the reply is unusable
    raise err
