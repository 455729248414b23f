"""A fault-injecting HTTP proxy in front of the S3-compatible test server.

Clients point their ``endpoint_url`` at the proxy; every request is forwarded to the real
server unless a rule matches it, in which case the proxy answers with the fault instead:

- ``slowdown``: ``503 SlowDown`` (S3 throttling), the body S3 sends;
- ``internal_error``: ``500 InternalError``;
- ``access_denied``: ``403 AccessDenied``, as S3 answers credentials whose policy lacks the action;
- ``bad_gateway``: ``502`` with an HTML body, as a load balancer in front of S3 answers;
- ``timeout``: the request is read, then nothing is answered for ``delay_s`` and the
  connection is closed (the client's read timeout fires first);
- ``reset``: the connection is closed without an answer;
- ``lost_answer``: the request is forwarded (so it takes effect) but the connection closes
  before the answer: the client retries a request that already succeeded;
- ``truncate_body``: the request is forwarded, the answer's headers promise the full body
  but only half of it is sent before the connection closes;
- ``stall``: the request body is half read, ``hit`` is set, and the proxy holds the
  connection for ``delay_s`` without forwarding (to kill a writer mid-upload).

Rules match on HTTP method, a substring of the path (the object key), a query marker and
optionally a header; ``times`` limits how often a rule fires (None: always), ``rate``
makes it fire at random with a seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

FaultKind = Literal["slowdown", "internal_error", "access_denied", "bad_gateway", "timeout", "reset", "lost_answer", "truncate_body", "stall"]

_XML_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal_error": (500, "InternalError", "We encountered an internal error. Please try again."),
    "access_denied": (403, "AccessDenied", "Access Denied"),
}
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


@dataclass
class Fault:
    """One injection rule."""

    kind: FaultKind
    method: str | None = None  # GET, PUT, HEAD, ...; None matches any
    path_contains: str | None = None  # a substring of the request path (bucket/key)
    query_contains: str | None = None  # e.g. "list-type=2" for ListObjectsV2
    header: str | None = None  # only requests carrying this header (e.g. "x-amz-copy-source")
    times: int | None = 1  # how many times it fires; None: every match
    rate: float = 1.0  # probability of firing on a match
    delay_s: float = 3.0  # timeout / stall duration
    fired: int = 0
    hit: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str, headers) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method and method != self.method:
            return False
        target, _, query = path.partition("?")
        if self.path_contains and self.path_contains not in target:
            return False
        if self.query_contains and self.query_contains not in query:
            return False
        return not (self.header and self.header.lower() not in {k.lower() for k in headers})


@dataclass
class Seen:
    method: str
    path: str
    fault: str | None  # the fault injected, None when forwarded


class FaultyS3:
    """Proxy on 127.0.0.1 forwarding to ``upstream`` (``http://host:port``) with injected faults."""

    def __init__(self, upstream: str, seed: int = 0):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultyS3:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def injected(self, kind: str | None = None) -> int:
        return sum(1 for s in self.seen if s.fault and (kind is None or s.fault == kind))

    def _pick(self, method: str, path: str, headers) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, headers) and (fault.rate >= 1.0 or self._rng.random() < fault.rate):
                    fault.fired += 1
                    self.seen.append(Seen(method, path, fault.kind))
                    return fault
            self.seen.append(Seen(method, path, None))
            return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                return

            def _body(self, limit: int | None = None) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length if limit is None else min(length, limit))

            def _handle(self) -> None:
                fault = proxy._pick(self.command, self.path, self.headers)
                if fault is not None and fault.kind == "stall":
                    self._body(limit=int(self.headers.get("Content-Length") or 0) // 2)
                    fault.hit.set()
                    time.sleep(fault.delay_s)
                    self.close_connection = True
                    return
                body = self._body()
                if fault is None or fault.kind in ("truncate_body", "lost_answer"):
                    status, headers, payload = self._forward(body)
                    if fault is not None and fault.kind == "lost_answer":
                        fault.hit.set()
                        self.close_connection = True
                        return
                    if fault is not None:
                        fault.hit.set()
                        self._reply(status, headers, payload, send=len(payload) // 2)
                        self.close_connection = True
                        return
                    self._reply(status, headers, payload)
                    return
                fault.hit.set()
                if fault.kind in _XML_ERRORS:
                    status, code, message = _XML_ERRORS[fault.kind]
                    xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>'
                    self._reply(status, [("Content-Type", "application/xml")], xml.encode())
                elif fault.kind == "bad_gateway":
                    self._reply(502, [("Content-Type", "text/html")], b"<html><body><h1>502 Bad Gateway</h1></body></html>")
                elif fault.kind == "timeout":
                    time.sleep(fault.delay_s)
                    self.close_connection = True
                elif fault.kind == "reset":
                    self.close_connection = True

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    dropped = _HOP_HEADERS if self.command == "HEAD" else _HOP_HEADERS | {"content-length"}
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in dropped]
                    return response.status, kept, payload
                finally:
                    conn.close()

            def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes, send: int | None = None) -> None:
                self.send_response_only(status)
                for key, value in headers:
                    self.send_header(key, value)
                if not any(k.lower() == "content-length" for k, _ in headers):
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload if send is None else payload[:send])
                self.wfile.flush()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
