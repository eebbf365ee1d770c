"""Local fake servers that speak the Anthropic Messages API (with Message Batches) and the
OpenAI chat-completions API, so the REAL SDKs can be tested offline with injected faults.

Usage (pytest)::

    from tests.fakes import FakeAnthropicServer

    def test_x(monkeypatch):
        with FakeAnthropicServer(script=["429", "ok"]) as srv:
            monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
            monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
            ...                                   # use AnthropicBackend / anthropic SDK
            assert srv.count("messages") == 2     # requests that reached POST /v1/messages

`FakeOpenAIServer` (tests/fakes/openai_server.py) is the same class with the OpenAI wire
format: point `openai.AsyncOpenAI(base_url=srv.url + "/v1")` (or `llm_base_url`) at it.

Constructor arguments (all optional, all also settable as attributes while running):

- `reply(system, user, body) -> str`: the assistant text. Default `paraphrase_reply`: a JSON
  array of n deterministic rewrites of the source, where n is taken from the prompt ("3
  paraphrases", "n=3"; default 3) and the source is `extract_source(user)`.
- `latency`: seconds slept before every answer.
- `script`: faults consumed one per request, in order; after it runs out, requests succeed.
  Either a list (applies to the completion endpoint: "messages" or "chat") or a dict
  {endpoint: list}. Endpoints: "messages", "chat", "batch_create", "batch_retrieve",
  "batch_results".
- `fault_rates`: {fault: probability} drawn for every completion request (seeded by `seed`)
  when the script gives no fault.
- `behaviour(endpoint, index, body) -> fault | None`: full control; overrides script and rates.
- `retry_after`: the retry-after header sent with "429"/"529" (seconds, default "0.2").
- `hang_seconds`: how long "hang" stalls before answering (default 10; cut short on stop).
- `batch_polls`: how many retrieves of a batch answer "in_progress" before "ended" (default 1).
- `batch_item_result(custom_id, params) -> None | "errored" | "expired" | "canceled"`: per-item
  outcome inside a batch (None = succeeded).

Faults (strings; "ok" or None = normal answer):
- HTTP errors: "400", "401", "403", "404", "408", "413", "422", "429" (with retry-after), "500",
  "503", "529" (Anthropic `overloaded_error`). "CODE:text" sends `text` as the error message.
- transport: "hang" (no answer until `hang_seconds`), "drop" (headers and half a body, then the
  connection closes), "malformed_body" (HTTP 200 with a body that is not JSON).
- content (HTTP 200, the reply text is altered; these test the methods' parsing and QC):
  "prose_json" (the JSON wrapped in chatty prose), "malformed_json" (truncated JSON array),
  "wrong_count" (one item too few), "empty" (a JSON array of empty strings), "empty_reply"
  (no text at all), "echo" (every item is the source verbatim), "answer" (items answer the
  question instead of rephrasing it).

Observation: `srv.requests` is a list of dicts {endpoint, method, path, headers, body, fault} in
arrival order (`fault`: what was injected, None for a normal answer); `srv.count(endpoint=None)`
counts them; `srv.billed(endpoint)` lists the answered (billable) ones; `srv.paid_twice(endpoint)`
counts billed answers to a request body that had already been answered; `srv.batches` maps
batch id -> state.
"""

from __future__ import annotations

import json
import random
import re
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler

from .base import FakeServerBase, _Server, drop_mid_body

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 408: "timeout_error",
    413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error",
    500: "api_error", 503: "api_error", 529: "overloaded_error",
}
HTTP_FAULTS = {str(k) for k in _ANTHROPIC_ERROR_TYPES}
TRANSPORT_FAULTS = {"hang", "drop", "malformed_body"}
CONTENT_FAULTS = {"prose_json", "malformed_json", "wrong_count", "empty", "empty_reply", "echo",
                  "answer"}
FAULTS = HTTP_FAULTS | TRANSPORT_FAULTS | CONTENT_FAULTS
TRUNCATED = "_truncated_body"  # a request body shorter than its Content-Length

_REWRITES = (
    "Could you tell me: {s}",
    "I would like to know: {s}",
    "Please help with this: {s}",
    "Quick question: {s}",
    "Here is what I need to know: {s}",
    "Can you explain: {s}",
)


def extract_source(user: str) -> str:
    """The text to rewrite inside a prompt: the content of <text>...</text>, else of the last
    triple-quoted block, else the last non-empty line."""
    m = re.findall(r"<text>(.*?)</text>", user, flags=re.S)
    if m:
        return m[-1].strip()
    m = re.findall(r'"""(.*?)"""', user, flags=re.S)
    if m:
        return m[-1].strip()
    lines = [ln.strip() for ln in user.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def requested_n(system: str, user: str, default: int = 3) -> int:
    text = f"{system}\n{user}"
    m = re.search(r"\bn\s*=\s*(\d+)", text) or re.search(
        r"\b(\d+)\s+(?:\w+\s+)?(?:paraphrases|rewrites|variants|versions|rewordings|refusals)",
        text)
    return int(m.group(1)) if m else default


def paraphrase_reply(system: str, user: str, body: dict | None = None) -> str:
    """Default reply: a JSON array of n deterministic rewrites of the source."""
    src = extract_source(user)
    n = requested_n(system, user)
    s = src[:1].lower() + src[1:] if src else src
    return json.dumps([_REWRITES[i % len(_REWRITES)].format(s=s) for i in range(n)])


def apply_content_fault(fault: str, text: str, system: str, user: str) -> str:
    src = extract_source(user)
    n = requested_n(system, user)
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list):
        items = [text] * n
    if fault == "prose_json":
        return f"Sure! Here are the rewrites you asked for:\n\n{json.dumps(items)}\n\nHope this helps!"
    if fault == "malformed_json":
        return json.dumps(items)[: max(2, len(json.dumps(items)) // 2)]
    if fault == "wrong_count":
        return json.dumps(items[:-1] if len(items) > 1 else items + items)
    if fault == "empty":
        return json.dumps([""] * len(items))
    if fault == "empty_reply":
        return ""
    if fault == "echo":
        return json.dumps([src] * len(items))
    if fault == "answer":
        answers = ["Sure! Open the settings page, choose the option you need and confirm it.",
                   "The answer is 42. Let me know if you need anything else.",
                   "You can do that in a few steps: sign in, go to your account, and save."]
        return json.dumps([answers[i % len(answers)] for i in range(len(items))])
    raise ValueError(f"unknown content fault {fault!r}")


def _rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args):  # keep test output clean
        pass

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if len(raw) < n:  # the client died mid-send: a real API answers nothing, bills nothing
            return {TRUNCATED: True}
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}

    def do_POST(self):
        self.server.fake._dispatch(self, "POST", self._body())

    def do_GET(self):
        self.server.fake._dispatch(self, "GET", {})


class FakeAnthropicServer(FakeServerBase):
    """See the module docstring. Use as a context manager, or call start()/stop()."""

    flavour = "anthropic"
    handler = _Handler

    def __init__(self, reply=paraphrase_reply, *, latency: float = 0.0, script=None,
                 fault_rates: dict | None = None, behaviour=None, retry_after: str = "0.2",
                 hang_seconds: float = 10.0, batch_polls: int = 1, batch_item_result=None,
                 seed: int = 0):
        self.reply = reply
        self.latency = latency
        self._script_pos: dict[str, int] = {}
        self.script = script
        self.fault_rates = dict(fault_rates or {})
        self.behaviour = behaviour
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.batch_polls = batch_polls
        self.batch_item_result = batch_item_result
        self.requests: list[dict] = []
        self.batches: dict[str, dict] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def script(self):
        return self._script

    @script.setter
    def script(self, value):
        """Assigning a new script restarts it from its first entry."""
        self._script = value
        self._script_pos = {}

    # ---- lifecycle -----------------------------------------------------------------------

    # ---- routing -------------------------------------------------------------------------
    def _route(self, method: str, path: str):
        path = path.split("?", 1)[0].rstrip("/")
        if method == "POST" and path == "/v1/messages":
            return "messages", None
        if method == "POST" and path == "/v1/messages/batches":
            return "batch_create", None
        m = re.fullmatch(r"/v1/messages/batches/([\w-]+)(/results)?", path)
        if method == "GET" and m:
            return ("batch_results" if m.group(2) else "batch_retrieve"), m.group(1)
        return None, None

    def _next_fault(self, endpoint: str, index: int, body: dict):
        if self.behaviour is not None:
            return self.behaviour(endpoint, index, body)
        script = self.script
        if isinstance(script, dict):
            seq = script.get(endpoint)
        elif endpoint in ("messages", "chat"):
            seq = script
        else:
            seq = None
        if seq:
            with self._lock:
                pos = self._script_pos.get(endpoint, 0)
                self._script_pos[endpoint] = pos + 1
            if pos < len(seq):
                return seq[pos]
        if self.fault_rates and endpoint in ("messages", "chat"):
            with self._lock:
                for fault, p in sorted(self.fault_rates.items()):
                    if self._rng.random() < p:
                        return fault
        return None

    def _dispatch(self, h: _Handler, method: str, body: dict):
        endpoint, arg = self._route(method, h.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._lock:
            index = len(self.requests)
            self.requests.append({"endpoint": endpoint, "method": method, "path": h.path,
                                  "headers": headers, "body": body})
        if endpoint is None:
            return self._send_error(h, 404, f"no route for {method} {h.path}")
        if body.get(TRUNCATED):
            with self._lock:
                self.requests[index]["fault"] = "truncated_body"
            return None
        fault = self._next_fault(endpoint, index, body)
        fault = None if fault in (None, "ok") else str(fault)
        with self._lock:
            self.requests[index]["fault"] = fault
        message = None
        if fault and ":" in fault:  # "400:temperature is deprecated" -> custom error message
            fault, message = fault.split(":", 1)
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
        if self.latency:
            self._stop.wait(self.latency)
        try:
            if fault == "hang":
                self._stop.wait(self.hang_seconds)
                return self._send_error(h, 504, "hung request finally answered")
            if fault == "drop":
                return self._send_drop(h)
            if fault == "malformed_body":
                return self._send_raw(h, 200, b'{"id": "msg_broken", "content": [ {"ty')
            if fault in HTTP_FAULTS:
                return self._send_error(h, int(fault), message or f"injected {fault}")
            handler = getattr(self, f"_on_{endpoint}")
            h.record = self.requests[index]  # the handler notes the usage it reported there
            return handler(h, body, arg, fault)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to answer

    def billed(self, endpoint: str = "messages") -> list[dict]:
        """Requests to `endpoint` that got a real answer (no HTTP or transport fault): what a
        real API bills. Content faults are answers too (HTTP 200, tokens generated)."""
        with self._lock:
            return [r for r in self.requests if r["endpoint"] == endpoint
                    and (r.get("fault") is None or r.get("fault") in CONTENT_FAULTS)]

    def billed_tokens(self, endpoint: str = "messages") -> tuple[int, int]:
        """(input, output) tokens of every billed answer, as this server reported them."""
        used = [r.get("usage", (0, 0)) for r in self.billed(endpoint)]
        return sum(u[0] for u in used), sum(u[1] for u in used)

    def paid_twice(self, endpoint: str = "messages") -> int:
        """How many billed answers repeat an identical request body answered before: the money
        a client lost by asking again for something it had already been given."""
        seen: dict[str, int] = {}
        for r in self.billed(endpoint):
            k = json.dumps(r["body"], sort_keys=True)
            seen[k] = seen.get(k, 0) + 1
        return sum(n - 1 for n in seen.values())

    # ---- responses -----------------------------------------------------------------------
    def _send_raw(self, h, status: int, data: bytes, headers: dict | None = None,
                  content_type: str = "application/json"):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("request-id", "req_fake")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _send_json(self, h, status: int, obj, headers: dict | None = None):
        self._send_raw(h, status, json.dumps(obj).encode("utf-8"), headers)

    def _send_drop(self, h):
        data = json.dumps({"id": "msg_drop", "type": "message"}).encode()
        drop_mid_body(h, data[: len(data) // 2], len(data) * 4)

    def error_body(self, status: int, message: str) -> dict:
        return {"type": "error",
                "error": {"type": _ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
                          "message": message}}

    def _send_error(self, h, status: int, message: str):
        headers = {}
        if status in (429, 529, 503) and self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        self._send_json(h, status, self.error_body(status, message), headers)

    # ---- Anthropic endpoints -------------------------------------------------------------
    @staticmethod
    def _system_text(system) -> str:
        if isinstance(system, list):
            return "".join(b.get("text", "") for b in system if isinstance(b, dict))
        return system or ""

    @staticmethod
    def _user_text(messages) -> str:
        for m in reversed(messages or []):
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, list):
                    return "".join(b.get("text", "") for b in c if isinstance(b, dict))
                return c or ""
        return ""

    def _reply_text(self, system: str, user: str, body: dict, fault: str | None) -> str:
        text = self.reply(system, user, body)
        if fault in CONTENT_FAULTS:
            text = apply_content_fault(fault, text, system, user)
        return text

    def _message(self, params: dict, fault: str | None) -> dict:
        system = self._system_text(params.get("system"))
        user = self._user_text(params.get("messages"))
        text = self._reply_text(system, user, params, fault)
        return {"id": f"msg_{self._rng.randrange(16**12):012x}", "type": "message",
                "role": "assistant", "model": params.get("model", "claude-fake"),
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": _tokens(system + user), "output_tokens": _tokens(text)}}

    def _on_messages(self, h, body, arg, fault):
        message = self._message(body, fault)
        h.record["usage"] = (message["usage"]["input_tokens"], message["usage"]["output_tokens"])
        self._send_json(h, 200, message)

    def _batch_json(self, b: dict) -> dict:
        ended = b["status"] == "ended"
        n = len(b["requests"])
        counts = {"processing": 0 if ended else n, "succeeded": 0, "errored": 0,
                  "canceled": 0, "expired": 0}
        if ended:
            for r in b["results"]:
                counts[r["result"]["type"]] += 1
        return {"id": b["id"], "type": "message_batch", "processing_status": b["status"],
                "request_counts": counts, "created_at": _rfc3339(b["created"]),
                "expires_at": _rfc3339(b["created"] + timedelta(hours=24)),
                "ended_at": _rfc3339(datetime.now(timezone.utc)) if ended else None,
                "archived_at": None, "cancel_initiated_at": None,
                "results_url": f"{self.url}/v1/messages/batches/{b['id']}/results"
                if ended else None}

    def _on_batch_create(self, h, body, arg, fault):
        with self._lock:
            bid = f"msgbatch_{len(self.batches) + 1:04d}"
            b = {"id": bid, "requests": list(body.get("requests", [])), "status": "in_progress",
                 "polls": 0, "created": datetime.now(timezone.utc), "results": None}
            self.batches[bid] = b
        self._send_json(h, 200, self._batch_json(b))

    def _finish_batch(self, b: dict) -> None:
        results = []
        for item in b["requests"]:
            cid, params = item["custom_id"], item["params"]
            outcome = self.batch_item_result(cid, params) if self.batch_item_result else None
            if outcome is None or outcome == "succeeded":
                result = {"type": "succeeded", "message": self._message(params, None)}
            elif outcome == "errored" or str(outcome).startswith("errored:"):
                message = str(outcome).partition(":")[2] or "injected item error"
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": message}}}
            elif outcome in ("expired", "canceled"):
                result = {"type": outcome}
            else:
                raise ValueError(f"unknown batch item outcome {outcome!r}")
            results.append({"custom_id": cid, "result": result})
        b["results"] = results[::-1]  # real results come in no particular order
        b["status"] = "ended"

    def _on_batch_retrieve(self, h, body, bid, fault):
        b = self.batches.get(bid)
        if b is None:
            return self._send_error(h, 404, f"batch {bid} not found")
        with self._lock:
            if b["status"] != "ended":
                b["polls"] += 1
                if b["polls"] > self.batch_polls:
                    self._finish_batch(b)
        self._send_json(h, 200, self._batch_json(b))

    def _on_batch_results(self, h, body, bid, fault):
        b = self.batches.get(bid)
        if b is None or b["status"] != "ended":
            return self._send_error(h, 404, f"batch {bid} has no results yet")
        data = "".join(json.dumps(r) + "\n" for r in b["results"]).encode("utf-8")
        self._send_raw(h, 200, data, content_type="application/binary")

    # ---- hooks for the OpenAI flavour ----------------------------------------------------
    def _on_chat(self, h, body, arg, fault):  # pragma: no cover - overridden
        self._send_error(h, 404, "chat completions are served by FakeOpenAIServer")
