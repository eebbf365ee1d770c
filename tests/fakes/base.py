"""What every fake server shares: a threaded HTTP server on an ephemeral loopback port, started
and stopped by a context manager, with the requests it received recorded for assertions."""

from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer


def drop_mid_body(h, partial: bytes, claimed_length: int) -> None:
    """The "drop" fault: announce `claimed_length` bytes, send `partial`, then close the
    connection, as a proxy or server that dies mid-response would."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(claimed_length))
    h.end_headers()
    h.wfile.write(partial)
    h.wfile.flush()
    h.close_connection = True
    try:
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        """A client killed mid-request (the SIGKILL tests) resets its connection: expected,
        not worth a traceback on stderr."""
        import sys
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class FakeServerBase:
    """Subclasses set `handler` (a BaseHTTPRequestHandler class) and fill `self.requests`
    (dicts with an "endpoint" key) under `self._lock`; `self._stop` is set on shutdown so a
    handler that hangs on purpose can end early."""

    handler = None

    def _init_base(self) -> None:
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = None
        self._thread = None

    def start(self):
        self._httpd = _Server(("127.0.0.1", 0), self.handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, endpoint: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if endpoint is None or r["endpoint"] == endpoint)
