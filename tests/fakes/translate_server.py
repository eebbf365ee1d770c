"""A local fake translation server for the REAL deep-translator classes, with injected faults.

It speaks four wire formats on one port:

- LibreTranslate: `POST /translate` with q, source, target (JSON body, form body, or query
  string, which is what deep-translator sends) -> `{"translatedText": ...}`. Point
  `LibreTranslator(custom_url=srv.url + "/")` (or `translate_base_url`) at it.
- Google's mobile page that `GoogleTranslator` scrapes: `GET /m?sl=..&tl=..&q=..` -> HTML with
  `<div class="result-container">...</div>`. deep-translator reads the URL from
  `deep_translator.constants.BASE_URLS["GOOGLE_TRANSLATE"]` when the object is built; a test
  redirects it with `monkeypatch.setitem(BASE_URLS, "GOOGLE_TRANSLATE", srv.url + "/m")`.
- MyMemory: `GET /get?langpair=en-GB|pt-PT&q=..` (BASE_URLS["MYMEMORY"] = srv.url + "/get").
- DeepL v2: `GET /v2/translate?auth_key=..&source_lang=..&target_lang=..&text=..`
  (BASE_URLS["DEEPL_FREE"] = srv.url + "/{version}/"); 403 when `api_key` is set and differs.
- Microsoft Translator v3: `POST /microsoft/translate?api-version=3.0&from=..&to=..` with a JSON
  body `[{"text": ..}]` -> `[{"translations": [{"text": .., "to": ..}]}]`, and `GET
  /microsoft/languages?api-version=3.0&scope=translation` (BASE_URLS["MICROSOFT_TRANSLATE"] =
  srv.url + "/microsoft/translate?api-version=3.0"); errors in Azure's shape
  `{"error": {"code": 401000, ..}}`, 401 when `api_key` is set and the
  Ocp-Apim-Subscription-Key header differs.

Knobs (constructor arguments, also settable while running), the same as the fake LLM servers:
- `translate(text, source, target) -> str`: default `fake_translate` (deterministic; see there).
- `script`: faults consumed one per translation request, in order, then requests succeed; a
  list, or a dict {endpoint: list} with endpoints "libre", "google", "mymemory", "deepl",
  "microsoft", "microsoft_languages".
- `fault_rates`: {fault: probability}, drawn per request (seeded) when the script gives none.
- `behaviour(endpoint, index, params) -> fault | None`: full control.
- `retry_after`: Retry-After header on 429/503 (default "0.1"); `hang_seconds` (default 10).
- `api_key`: the key Libre/DeepL must send (None = any).

Faults: "400", "403", "404", "429", "500", "502", "503" (HTTP errors), "hang" (no answer for
`hang_seconds`, cut short on stop), "drop" (half a body, then the connection closes),
"malformed_body" (200 with a body that is not JSON / has no result element), "empty" (200 with
an empty translation).

Observation: `srv.requests` (dicts {endpoint, method, path, params}) and `srv.count(endpoint)`.
"""

from __future__ import annotations

import html
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler

from .base import FakeServerBase, _Server, drop_mid_body
from urllib.parse import parse_qs, urlsplit

FAULTS = {"400", "403", "404", "429", "500", "502", "503", "hang", "drop", "malformed_body",
          "empty"}

# What the fake "translation" back into English changes, so a round trip is a real variant.
_BACK_SWAPS = [("How do I", "How can I"), ("short", "brief"), ("big", "large"),
               ("help me", "assist me"), ("quick", "fast"), ("Please ", "Kindly ")]


def fake_translate(text: str, source: str, target: str) -> str:
    """Into a non-English language: "[pt] <text>". Back into English: the tag is removed and
    the first applicable swap from `_BACK_SWAPS` applied, so "How do I X?" comes back as
    "How can I X?" and a text with no swap comes back unchanged (for the "unchanged" path)."""
    base = target.lower().split("-")[0]
    if base != "en":
        return f"[{base}] {text}"
    text = re.sub(r"^\[[a-z]{2,3}\]\s*", "", text)
    for old, new in _BACK_SWAPS:
        if old in text:
            return text.replace(old, new, 1)
    return text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args):
        pass

    def _params(self) -> dict:
        params = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if raw:
            ctype = self.headers.get("Content-Type", "")
            if "json" in ctype:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    params.update(body)
                elif body is not None:  # Microsoft's [{"text": ...}]
                    params["_body"] = body
            else:
                params.update({k: v[-1] for k, v in parse_qs(raw.decode()).items()})
        return params

    def do_POST(self):
        self.server.fake._dispatch(self, "POST", self._params())

    def do_GET(self):
        self.server.fake._dispatch(self, "GET", self._params())


class FakeTranslateServer(FakeServerBase):
    handler = _Handler

    def __init__(self, translate=fake_translate, *, script=None, fault_rates=None,
                 behaviour=None, retry_after: str | None = "0.1", hang_seconds: float = 10.0,
                 api_key: str | None = None, seed: int = 0):
        self.translate = translate
        self.script = script
        self.fault_rates = dict(fault_rates or {})
        self.behaviour = behaviour
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.api_key = api_key
        self.requests: list[dict] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pos: dict[str, int] = {}
        self._httpd = None
        self._thread = None


    @staticmethod
    def _route(method: str, path: str) -> str | None:
        path = urlsplit(path).path.rstrip("/")
        if method == "POST" and path == "/translate":
            return "libre"
        if method == "GET" and path == "/m":
            return "google"
        if method == "GET" and path == "/get":
            return "mymemory"
        if method == "GET" and path == "/v2/translate":
            return "deepl"
        if method == "POST" and path == "/microsoft/translate":
            return "microsoft"
        if method == "GET" and path == "/microsoft/languages":
            return "microsoft_languages"
        return None

    def _next_fault(self, endpoint: str, index: int, params: dict):
        if self.behaviour is not None:
            return self.behaviour(endpoint, index, params)
        seq = self.script.get(endpoint) if isinstance(self.script, dict) else self.script
        if seq:
            with self._lock:
                pos = self._pos.get(endpoint, 0)
                self._pos[endpoint] = pos + 1
            if pos < len(seq):
                return seq[pos]
        if self.fault_rates:
            with self._lock:
                for fault, p in sorted(self.fault_rates.items()):
                    if self._rng.random() < p:
                        return fault
        return None

    def _dispatch(self, h, method: str, params: dict):
        endpoint = self._route(method, h.path)
        with self._lock:
            index = len(self.requests)
            self.requests.append({"endpoint": endpoint, "method": method, "path": h.path,
                                  "params": params,
                                  "headers": {k.lower(): v for k, v in h.headers.items()}})
        if endpoint is None:
            return self._send(h, 404, {"error": f"no route for {method} {h.path}"})
        fault = self._next_fault(endpoint, index, params)
        if fault not in (None, "ok") and str(fault) not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
        fault = None if fault in (None, "ok") else str(fault)
        try:
            if fault == "hang":
                self._stop.wait(self.hang_seconds)
                return self._send(h, 504, {"error": "hung request finally answered"})
            if fault == "drop":
                return self._drop(h)
            if fault and fault.isdigit():
                headers = {}
                if fault in ("429", "503") and self.retry_after is not None:
                    headers["Retry-After"] = str(self.retry_after)
                if endpoint.startswith("microsoft"):  # Azure's error shape: 6-digit codes
                    return self._send(h, int(fault), {"error": {
                        "code": int(fault) * 1000, "message": f"injected {fault}"}}, headers)
                return self._send(h, int(fault), {"error": f"injected {fault}"}, headers)
            if self.api_key is not None and endpoint in ("libre", "deepl"):
                sent = params.get("api_key") or params.get("auth_key")
                if sent != self.api_key:
                    return self._send(h, 403, {"error": "Invalid API key"})
            if self.api_key is not None and endpoint == "microsoft":
                if h.headers.get("Ocp-Apim-Subscription-Key") != self.api_key:
                    return self._send(h, 401, {"error": {"code": 401000, "message": (
                        "The request is not authorized because credentials are missing or "
                        "invalid.")}})
            getattr(self, f"_on_{endpoint}")(h, params, fault)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def _text(self, params, q, s, t, fault) -> str:
        if fault == "empty":
            return ""
        return self.translate(params.get(q, ""), params.get(s, "auto"), params.get(t, "en"))

    def _on_libre(self, h, params, fault):
        if fault == "malformed_body":
            return self._send_raw(h, 200, b'{"translatedTe')
        self._send(h, 200, {"translatedText": self._text(params, "q", "source", "target", fault)})

    def _on_google(self, h, params, fault):
        if fault == "malformed_body":
            page = "<html><body><p>Our systems have detected unusual traffic</p></body></html>"
        else:
            out = html.escape(self._text(params, "q", "sl", "tl", fault))
            page = (f'<html><body><div class="result-container">{out}</div></body></html>')
        self._send_raw(h, 200, page.encode("utf-8"), content_type="text/html; charset=utf-8")

    def _on_mymemory(self, h, params, fault):
        if fault == "malformed_body":
            return self._send_raw(h, 200, b"<html>not json")
        src, _, tgt = params.get("langpair", "en|en").partition("|")
        params = dict(params, _s=src, _t=tgt)
        out = self._text(params, "q", "_s", "_t", fault)
        self._send(h, 200, {"responseData": {"translatedText": out}, "matches": []})

    def _on_deepl(self, h, params, fault):
        if fault == "malformed_body":
            return self._send_raw(h, 200, b'{"translations": [')
        out = self._text(params, "text", "source_lang", "target_lang", fault)
        self._send(h, 200, {"translations": [{"detected_source_language": "EN", "text": out}]})

    MICROSOFT_LANGUAGES = {"en": "English", "de": "German", "fr": "French", "pt": "Portuguese (Brazil)",
                           "pt-pt": "Portuguese (Portugal)", "es": "Spanish"}

    def _on_microsoft_languages(self, h, params, fault):
        if fault == "malformed_body":
            return self._send_raw(h, 200, b'{"dictionary": {}}')
        self._send(h, 200, {"translation": {k: {"name": v, "nativeName": v, "dir": "ltr"}
                                            for k, v in self.MICROSOFT_LANGUAGES.items()}})

    def _on_microsoft(self, h, params, fault):
        if fault == "malformed_body":
            return self._send_raw(h, 200, b'[{"translations": [')
        items = params.get("_body") or [{}]
        params = dict(params, _q=items[0].get("text") or items[0].get("Text") or "")
        out = self._text(params, "_q", "from", "to", fault)
        self._send(h, 200, [{"translations": [{"text": out, "to": params.get("to")}]}])

    def _send_raw(self, h, status: int, data: bytes, headers=None,
                  content_type: str = "application/json"):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _send(self, h, status: int, obj, headers=None):
        self._send_raw(h, status, json.dumps(obj).encode("utf-8"), headers)

    def _drop(self, h):
        data = b'{"translatedText": "half'
        drop_mid_body(h, data, len(data) * 4)
