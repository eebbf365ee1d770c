"""Anthropic Message Batches: half-price bulk completions that survive a killed build.

Why a state file: a batch is paid for when it is created. If the build is killed while it
waits (batches take minutes to hours), the rerun must poll the SAME batch rather than submit
and pay again. So the batch id is written to `state_path` right after `create`, before any
waiting, and the rerun with the same requests (same fingerprint) picks it up. The file is
deleted once all results have been read; a different request set (e.g. the caller resubmitting
only the failed ids) starts a new batch.

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)  # atomic: a kill leaves the old state or the new one, never half


def _reason(result) -> str:
    kind = result.type
    if kind == "errored":
        err = getattr(getattr(result, "error", None), "error", None)
        if err is not None:
            return f"errored: {getattr(err, 'type', 'error')}: {getattr(err, 'message', '')}"
        return "errored"
    return kind


async def run_batch(client, requests, state_path, poll_interval: float = 30.0, *,
                    backend=None, max_batch_requests: int = 100_000, max_retries: int = 6,
                    base_delay: float = 1.0, sleep=asyncio.sleep) -> dict:
    """Submit (or resume), wait for, and read one logical batch.

    client: an `anthropic.AsyncAnthropic`. requests: list of (custom_id, Messages params).
    backend: an AnthropicBackend, used for error mapping, retry settings and cost; optional.
    Returns {custom_id: ("succeeded", Completion) | ("errored"|"expired"|"canceled", reason)};
    an id the results never mention comes back as ("errored", "no result ...").
    """
    from .llm_anthropic import map_anthropic_error, message_text

    requests = list(requests)
    if not requests:
        return {}
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
                                        base_delay=base_delay))[0]

    state_path = Path(state_path)
    fp = fingerprint(requests)
    n = max(1, int(max_batch_requests))
    chunks = [requests[i:i + n] for i in range(0, len(requests), n)]
    state = _load_state(state_path)
    if state and state.get("fingerprint") == fp and state.get("chunk_size") == n:
        batch_ids = list(state.get("batch_ids", []))
        logger.info("resuming %d submitted batch(es) from %s: %s", len(batch_ids), state_path,
                    batch_ids)
    else:
        if state:
            logger.warning("%s holds batch(es) %s for a different set of requests; leaving "
                           "them alone and submitting a new batch", state_path,
                           state.get("batch_ids"))
        batch_ids = []
    state = {"version": STATE_VERSION, "fingerprint": fp, "chunk_size": n,
             "batch_ids": batch_ids, "n_requests": len(requests)}

    for chunk in chunks[len(batch_ids):]:
        body = [{"custom_id": cid, "params": params} for cid, params in chunk]
        batch = await api(lambda: client.messages.batches.create(requests=body))
        batch_ids.append(batch.id)
        state["batch_ids"] = batch_ids
        state["submitted_at"] = time.time()
        _save_state(state_path, state)
        logger.info("submitted batch %s (%d requests)", batch.id, len(chunk))

    model_of = {cid: params.get("model", "") for cid, params in requests}
    results: dict = {}
    for bid in batch_ids:
        while True:
            batch = await api(lambda: client.messages.batches.retrieve(bid))
            if batch.processing_status == "ended":
                break
            c = batch.request_counts
            logger.info("batch %s %s: %d processing, %d succeeded, %d errored", bid,
                        batch.processing_status, c.processing, c.succeeded, c.errored)
            await sleep(poll_interval)

        async def read_all(bid=bid):
            out = {}
            stream = await client.messages.batches.results(bid)
            async for item in stream:
                out[item.custom_id] = item.result
            return out

        for cid, result in (await api(read_all)).items():
            if result.type == "succeeded":
                msg = result.message
                if backend is not None:
                    comp = backend.to_completion(msg, batch=True)
                else:
                    i, o = int(msg.usage.input_tokens or 0), int(msg.usage.output_tokens or 0)
                    comp = Completion(text=message_text(msg), input_tokens=i, output_tokens=o,
                                      cost_usd=cost(model_of.get(cid, ""), i, o, batch=True))
                results[cid] = ("succeeded", comp)
            else:
                results[cid] = (result.type, _reason(result))
    for cid in ids:
        results.setdefault(cid, ("errored", "no result returned for this request"))
    try:
        state_path.unlink()
    except FileNotFoundError:
        pass
    return {cid: results[cid] for cid in ids}
