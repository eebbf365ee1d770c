"""Offline fake API servers for tests (real SDKs, local sockets). See anthropic_server.py for
the API: FakeAnthropicServer (Messages + Message Batches), FakeOpenAIServer (chat completions),
the default `paraphrase_reply`, and the fault names in FAULTS."""

from .anthropic_server import (CONTENT_FAULTS, FAULTS, HTTP_FAULTS, TRANSPORT_FAULTS,
                               FakeAnthropicServer, apply_content_fault, extract_source,
                               paraphrase_reply, requested_n)
from .openai_server import FakeOpenAIServer

__all__ = ["FakeAnthropicServer", "FakeOpenAIServer", "paraphrase_reply", "extract_source",
           "requested_n", "apply_content_fault", "FAULTS", "HTTP_FAULTS", "TRANSPORT_FAULTS",
           "CONTENT_FAULTS"]
