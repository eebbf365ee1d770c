"""Anthropic Message Batches: half-price bulk completions that survive a killed build.

Why a state file: a batch is paid for when it is created. If the build is killed while it
waits (batches take minutes to hours), or after the batch ended but before its results were
stored, the rerun must fetch the SAME batch rather than submit and pay again. So the batch id
is written to `state_path` right after `create`, before any waiting, and every later call with
that state path first polls and fetches the batches it records, whatever requests it was asked
for this time, and submits only what they did not answer. The ids stay recorded until the
caller has stored every result: with `keep_state=True` the caller deletes the file
(`clear_state`) after storing; otherwise it goes once the results are read.

Large request lists are split into batches of `max_batch_requests` (the API allows 100,000
per batch); their ids are all kept in the one state file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path

from ..errors import FatalBackendError
from ..types import Completion
from .limits import call_with_retries
from .pricing import cost

logger = logging.getLogger(__name__)

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
STATE_VERSION = 1


def fingerprint(requests) -> str:
    """Hash of every (custom_id, params): same work -> same batch."""
    payload = json.dumps([[cid, params] for cid, params in requests], sort_keys=True,
                         ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _load_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        logger.warning("ignoring unreadable batch state %s (%s)", path, e)
        return None


def _save_state(path: Path, state: dict) -> None:
    from ..atomic import write_text_atomic
    write_text_atomic(path, json.dumps(state, indent=1))  # a kill leaves the old state or the new


def recorded_custom_ids(path) -> list[str] | None:
    """The custom ids a state file's batches hold; None if there is no file or it predates
    them (then only fetching the batches tells)."""
    state = _load_state(Path(path))
    ids = state.get("custom_ids") if isinstance(state, dict) else None
    return [c for c in ids if isinstance(c, str)] if isinstance(ids, list) else None


def clear_state(path) -> None:
    """Forget the recorded batches (call once every result of them is stored)."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass


def _reason(result) -> str:
    """Why an item has no answer, in words (the status itself travels beside it)."""
    kind = result.type
    if kind == "errored":
        err = getattr(getattr(result, "error", None), "error", None)
        if err is not None:  # the API's words, which may quote the request: never the key
            import os

            from .limits import redact
            return redact(f"{getattr(err, 'type', 'error')}: {getattr(err, 'message', '')}"
                          .strip(": "), [os.environ.get("ANTHROPIC_API_KEY", "")])
        return "the API reported an error for this request"
    if kind == "expired":
        return "the batch expired before this request was processed"
    if kind == "canceled":
        return "the batch was canceled"
    return kind


async def run_batch(client, requests, state_path, poll_interval: float = 30.0, *,
                    backend=None, max_batch_requests: int = 100_000, max_retries: int = 6,
                    base_delay: float = 1.0, sleep=asyncio.sleep, keep_state: bool = False) -> dict:
    """Fetch the batches recorded at `state_path` (if any), submit what they did not answer,
    wait for it, and read every result.

    client: an `anthropic.AsyncAnthropic`. requests: list of (custom_id, Messages params).
    backend: an AnthropicBackend, used for error mapping, retry settings and cost; optional.
    Returns {custom_id: ("succeeded", Completion) | ("errored"|"expired"|"canceled", reason)}
    for every requested id (one the results never mention comes back as ("errored", ...)),
    plus any other id a recorded batch answered: it was paid for, the caller may store it.
    `keep_state=True` leaves the state file for the caller to `clear_state` after storing.
    """
    from .llm_anthropic import map_anthropic_error, message_text

    requests = list(requests)
    ids = [cid for cid, _ in requests]
    bad = [cid for cid in ids if not _CUSTOM_ID.match(str(cid))]
    if bad:
        raise ValueError(f"custom_id must match ^[a-zA-Z0-9_-]{{1,64}}$: {bad[:3]}")
    if len(set(ids)) != len(ids):
        raise ValueError("custom_id values must be unique within a batch")
    if backend is not None:
        max_retries, base_delay = backend.cfg.max_retries, backend.base_delay
        timeout = backend.timeout
    else:
        timeout = float(getattr(client, "timeout", 0) or 0)
    service = "anthropic batches"

    async def api(make_call):
        async def attempt():
            try:
                return await make_call()
            except Exception as e:  # noqa: BLE001 - narrowed by map_anthropic_error
                mapped = map_anthropic_error(e, timeout=timeout, service=service)
                if mapped is None:
                    raise
            raise mapped
        return (await call_with_retries(attempt, max_retries=max_retries,
                                        base_delay=base_delay,
                                        breaker=getattr(backend, "breaker", None)))[0]

    async def create(body):
        """Submit one batch. Retried only when the API certainly did not take it (429, 529
        overloaded, a connection never opened): a timeout, a 5xx or a dropped connection may
        come after the API accepted the batch, and a retry would then bill it twice."""
        from .limits import is_httpx_connect_error
        from .llm_anthropic import import_anthropic
        anthropic = import_anthropic()

        async def attempt():
            try:
                return await client.messages.batches.create(requests=body)
            except Exception as e:  # noqa: BLE001 - sorted below, the rest re-raised
                status = getattr(e, "status_code", None)
                cause = e.__cause__ or e.__context__
                refused = status in (429, 529) or (
                    isinstance(e, anthropic.APIConnectionError)
                    and not isinstance(e, anthropic.APITimeoutError)
                    and is_httpx_connect_error(cause))
                mapped = map_anthropic_error(e, timeout=timeout, service=service)
                if mapped is None:
                    raise
                if not refused and not isinstance(mapped, FatalBackendError):
                    mapped = FatalBackendError(
                        f"{service}: submitting a batch of {len(body)} requests got no clear "
                        f"answer ({mapped}); the API may have accepted it and will bill it. "
                        "Stopped rather than submit it twice: look in the Anthropic console for "
                        f"a batch created at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, let it "
                        "finish or cancel it. Every answer stored so far is kept; a rerun "
                        "submits the requests still missing.")
            raise mapped
        return (await call_with_retries(attempt, max_retries=max_retries,
                                        base_delay=base_delay,
                                        breaker=getattr(backend, "breaker", None)))[0]

    model_of = {cid: params.get("model", "") for cid, params in requests}

    async def collect(bid) -> dict:
        """Poll batch `bid` until it ended, then read its results ({} if the API no longer
        knows it: results are kept 29 days)."""
        while True:
            try:
                batch = await api(lambda: client.messages.batches.retrieve(bid))
            except FatalBackendError as e:
                if "HTTP 404" not in str(e):
                    raise
                logger.warning("batch %s recorded in %s is unknown to the API (%s); "
                               "submitting its requests again", bid, state_path, e)
                return {}
            if batch.processing_status == "ended":
                break
            c = batch.request_counts
            logger.info("batch %s %s: %d processing, %d succeeded, %d errored", bid,
                        batch.processing_status, c.processing, c.succeeded, c.errored)
            await sleep(poll_interval)

        async def read_all():
            out = {}
            stream = await client.messages.batches.results(bid)
            async for item in stream:
                out[item.custom_id] = item.result
            return out

        got = {}
        for cid, result in (await api(read_all)).items():
            if result.type == "succeeded":
                msg = result.message
                if backend is not None:
                    comp = backend.to_completion(msg, batch=True)
                else:
                    i, o = int(msg.usage.input_tokens or 0), int(msg.usage.output_tokens or 0)
                    comp = Completion(text=message_text(msg), input_tokens=i, output_tokens=o,
                                      cost_usd=cost(model_of.get(cid, ""), i, o, batch=True))
                got[cid] = ("succeeded", comp)
            else:
                got[cid] = (result.type, _reason(result))
        return got

    state_path = Path(state_path)
    state = _load_state(state_path) or {}
    recorded = [b for b in state.get("batch_ids", []) if isinstance(b, str)]
    results: dict = {}
    if recorded:
        logger.info("fetching %d recorded batch(es) from %s first: %s", len(recorded),
                    state_path, recorded)
        for bid in recorded:
            for cid, r in (await collect(bid)).items():
                if results.get(cid, ("",))[0] != "succeeded":
                    results[cid] = r
    todo = [(cid, params) for cid, params in requests
            if results.get(cid, ("",))[0] != "succeeded"]
    n = max(1, int(max_batch_requests))
    batch_ids = list(recorded)
    # custom ids of every request the recorded batches hold: a later build that finds each of
    # them stored can forget the record without asking the API (`recorded_custom_ids`)
    held = sorted({*[c for c in state.get("custom_ids", []) if isinstance(c, str)],
                   *[cid for cid, _ in todo]})
    state = {"version": STATE_VERSION, "fingerprint": fingerprint(requests), "chunk_size": n,
             "batch_ids": batch_ids, "n_requests": len(requests), "custom_ids": held}
    new_ids = []
    for i in range(0, len(todo), n):
        body = [{"custom_id": cid, "params": params} for cid, params in todo[i:i + n]]
        batch = await create(body)
        batch_ids.append(batch.id)
        new_ids.append(batch.id)
        state["submitted_at"] = time.time()
        _save_state(state_path, state)
        logger.info("submitted batch %s (%d requests)", batch.id, len(body))
    for bid in new_ids:
        results.update(await collect(bid))
    for cid in ids:
        results.setdefault(cid, ("errored", "no result returned for this request"))
    if not keep_state:
        clear_state(state_path)
    return {**{cid: results[cid] for cid in ids},
            **{cid: r for cid, r in results.items() if cid not in model_of}}
