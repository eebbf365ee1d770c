"""Fake OpenAI-compatible chat-completions server (what vLLM, Ollama and llama.cpp expose).

Same constructor, faults and observation API as `FakeAnthropicServer` (see
tests/fakes/anthropic_server.py); the endpoint is "chat" (`POST /v1/chat/completions`) and the
SDK's base URL is `srv.url + "/v1"` (also `srv.base_url`). Requests that carry a `seed` get
that seed recorded in `srv.requests[i]["body"]["seed"]`.
"""

from __future__ import annotations

import time

from .anthropic_server import FakeAnthropicServer, paraphrase_reply, _tokens

_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                       403: "permission_error", 404: "not_found_error",
                       429: "rate_limit_exceeded", 500: "server_error", 503: "server_error",
                       529: "server_error"}


class FakeOpenAIServer(FakeAnthropicServer):
    flavour = "openai"

    def __init__(self, reply=paraphrase_reply, **kwargs):
        super().__init__(reply, **kwargs)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _route(self, method: str, path: str):
        path = path.split("?", 1)[0].rstrip("/")
        if method == "POST" and path == "/v1/chat/completions":
            return "chat", None
        return None, None

    def error_body(self, status: int, message: str) -> dict:
        return {"error": {"message": message, "type": _OPENAI_ERROR_TYPES.get(status, "error"),
                          "param": None, "code": str(status)}}

    def _texts(self, body: dict) -> tuple[str, str]:
        messages = body.get("messages") or []
        system = "".join(m.get("content") or "" for m in messages if m.get("role") == "system")
        return system, self._user_text(messages)

    def _on_chat(self, h, body, arg, fault):
        system, user = self._texts(body)
        text = self._reply_text(system, user, body, fault)
        p, c = _tokens(system + user), _tokens(text)
        h.record["usage"] = (p, c)
        self._send_json(h, 200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})
