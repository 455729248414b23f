"""A fake LLM judge server for tests and benchmarks, speaking both wire formats on 127.0.0.1.

- Anthropic Messages: ``POST /v1/messages`` (point ``anthropic.Anthropic(base_url=server.anthropic_url)`` at it),
- OpenAI chat completions: ``POST /v1/chat/completions`` (``openai.OpenAI(base_url=server.openai_url)``).

Answers are valid judgments for the configured dimensions and flags, deterministic from
the request's user message (scores and flags from its sha256; ``judgment_for``), with
usage token counts of about one token per four characters. Every request first waits
``latency_s`` (simulated model time).

Faults are scripted with ``add_faults(["429", "500", "slow", "malformed"], match="item-3")``:
the next requests whose user message contains ``match`` (any request when None) get
those faults, one each, in order; later requests are answered normally. Faults:

=============  ==========================================================================
``"429"``      rate limited, with ``retry-after`` (seconds) and ``retry-after-ms`` headers
any status     e.g. ``"500"``, ``"503"``, ``"401"``: that status with an error body
``"slow"``     waits ``slow_s`` before answering (beyond a client timeout)
``"malformed"`` a 200 whose content is cut-off JSON
``"invalid"``  a 200 whose JSON has a score above the scale
``"prose"``    a 200 with the judgment in a ```json fence inside prose (valid)
``"disconnect"`` closes the connection without answering
=============  ==========================================================================

Pairwise comparisons. A user message holding ``<answer_a>...</answer_a>`` and
``<answer_b>...</answer_b>`` (the layout of ``modelwatch.judge.pairwise``) is answered
with ``{"preference": "A"|"B"|"tie", "reasoning": ...}``: each answer gets a quality
0-7 from the sha256 of its text (``answer_quality``); the better one wins, equal
qualities tie (``pair_preference``). That verdict depends on the answers, not on the
order they are shown in, so swapping them mirrors it. With ``position_bias=p`` a request
instead prefers the answer shown first ("A") with probability ``p``, decided by the
sha256 of the whole user message (so deterministic, and independent between the two
orders of a pair): ``preference_for``. Faults apply as above (``"invalid"`` answers a
preference of "C").

``stats()`` reports requests, the maximum number in flight at once (requests are counted
in flight from arrival until their answer is ready, so a client with concurrency N never
shows more than N unless it abandoned timed-out requests), and requests per fault.
When ``api_key`` is set, requests without it (``x-api-key`` or ``Authorization: Bearer``)
get a 401 whose message echoes the key presented, as some real APIs do (clients must
scrub it). Nothing here logs request headers.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTENT_FAULTS = ("malformed", "invalid", "prose")
_PAIR_ANSWER = {tag: re.compile(rf"<{tag}>\n(.*?)\n</{tag}>", re.DOTALL) for tag in ("answer_a", "answer_b")}


@dataclass(frozen=True)
class RequestRecord:
    wire: str  # "anthropic" or "openai"
    model: str
    user: str
    fault: str | None
    status: int  # 0: the connection was dropped
    request: dict[str, Any] | None = field(default=None, repr=False, compare=False)  # the JSON body as sent


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: without this, delayed ACKs add ~40 ms
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.fake.handle(self, body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeJudgeServer


class FakeJudgeServer:
    """The fake server; a context manager. ``dimensions``/``flags`` are the rubric's keys, ``scale`` its score range."""

    def __init__(self, dimensions: Sequence[str], flags: Sequence[str], *, scale: tuple[int, int] = (1, 5), latency_s: float = 0.0,
                 slow_s: float = 2.0, retry_after_s: float = 0.0, api_key: str | None = None, position_bias: float = 0.0):
        if not 0.0 <= position_bias <= 1.0:
            raise ValueError(f"position_bias must be a probability in [0, 1], got {position_bias}")
        self.position_bias = position_bias
        self.dimensions = list(dimensions)
        self.flags = list(flags)
        self.scale = scale
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.retry_after_s = retry_after_s
        self._api_key = api_key
        self._lock = threading.Lock()
        self._plans: list[tuple[str | None, deque[str]]] = []
        self._records: list[RequestRecord] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_rubric(cls, rubric: Any, **kwargs: Any) -> FakeJudgeServer:
        """A server answering for a ``modelwatch.judge.rubric.Rubric`` (its first dimension's scale)."""
        scale = next(iter(rubric.dimensions.values())).scale
        return cls(list(rubric.dimensions), list(rubric.flags), scale=(scale.min, scale.max), **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FakeJudgeServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-judge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return self._httpd.server_address[1]

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting and inspection ------------------------------------------------------------------------

    def add_faults(self, faults: Iterable[str], match: str | None = None) -> None:
        """The next requests whose user message contains ``match`` (any, when None) get ``faults``, one per request."""
        with self._lock:
            self._plans.append((match, deque(faults)))

    def reset(self) -> None:
        """Forget the faults, the request log and the in-flight maximum."""
        with self._lock:
            self._plans.clear()
            self._records.clear()
            self._max_in_flight = self._in_flight

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def requests_matching(self, text: str) -> list[RequestRecord]:
        return [r for r in self.records() if text in r.user]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": len(self._records), "max_in_flight": self._max_in_flight,
                    "faults": dict(Counter(r.fault for r in self._records if r.fault)),
                    "by_wire": dict(Counter(r.wire for r in self._records))}

    def judgment_for(self, user: str) -> dict[str, Any]:
        """The judgment this server gives for a user message: scores and flags from its sha256."""
        digest = hashlib.sha256(user.encode()).digest()
        low, high = self.scale
        scores = {dim: low + digest[i] % (high - low + 1) for i, dim in enumerate(self.dimensions)}
        flags = {flag: digest[16 + i] % 8 == 0 for i, flag in enumerate(self.flags)}
        return {"scores": scores, "flags": flags, "reasoning": f"fake judgment {digest.hex()[:12]}"}

    @staticmethod
    def pair_answers(user: str) -> tuple[str, str] | None:
        """(first shown, second shown) answers of a pairwise user message, read as a judge reads them (the prompt writes
        ``<``, ``>``, ``&`` of the texts as entities); None for any other message."""
        found = [pattern.search(user) for pattern in _PAIR_ANSWER.values()]
        return (html.unescape(found[0].group(1)), html.unescape(found[1].group(1))) if found[0] and found[1] else None

    @staticmethod
    def answer_quality(answer: str) -> int:
        """This server's hidden quality of an answer, 0-7, from the sha256 of its text."""
        return hashlib.sha256(answer.encode()).digest()[0] % 8

    def pair_preference(self, first: str, second: str) -> str:
        """The unbiased verdict on two answers in the order shown: "A" (first better), "B" or "tie"."""
        q_first, q_second = self.answer_quality(first), self.answer_quality(second)
        return "A" if q_first > q_second else "B" if q_second > q_first else "tie"

    def position_biased(self, user: str) -> bool:
        """Whether this request falls in the ``position_bias`` share that prefers the first answer whatever it says."""
        draw = int.from_bytes(hashlib.sha256(b"position-bias:" + user.encode()).digest()[:8], "big") / 2**64
        return draw < self.position_bias

    def preference_for(self, user: str) -> dict[str, Any]:
        """The pairwise verdict this server gives for a pairwise user message (see the module docstring)."""
        answers = self.pair_answers(user)
        if answers is None:
            raise ValueError("not a pairwise user message: no <answer_a> and <answer_b> blocks")
        first, second = answers
        if self.position_biased(user):
            return {"preference": "A", "reasoning": "fake preference: position bias, the first answer"}
        return {"preference": self.pair_preference(first, second),
                "reasoning": f"fake preference: qualities {self.answer_quality(first)} and {self.answer_quality(second)}"}

    # -- serving -----------------------------------------------------------------------------------------

    def _next_fault(self, user: str) -> str | None:
        with self._lock:
            for match, faults in self._plans:
                if faults and (match is None or match in user):
                    return faults.popleft()
        return None

    def handle(self, handler: _Handler, body: bytes) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        wire = "anthropic" if path.endswith("/v1/messages") else "openai" if path.endswith("/chat/completions") else None
        if wire is None:
            return self._send(handler, 404, {"error": {"message": f"no route {path}"}})
        try:
            request = json.loads(body)
            system, user = _messages(wire, request)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return self._send(handler, 400, _error_body(wire, 400, f"bad request: {exc}"))
        fault = self._next_fault(user) if self._authorized(handler) else "401"
        model = str(request.get("model", ""))
        status = 200 if fault in (None, "slow", *CONTENT_FAULTS) else 0 if fault == "disconnect" else int(fault)
        with self._lock:  # recorded on arrival: a client that times out has still made the request
            self._records.append(RequestRecord(wire, model, user, fault, status, request))
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            time.sleep(self.latency_s + (self.slow_s if fault == "slow" else 0.0))
        finally:
            with self._lock:
                self._in_flight -= 1
        if fault == "disconnect":
            handler.close_connection = True
            return None
        if status != 200:
            headers = {"retry-after": f"{self.retry_after_s:g}", "retry-after-ms": f"{self.retry_after_s * 1000:g}"} if status == 429 else {}
            # like some real APIs, a refused key is echoed back: clients must not pass it on to their logs
            message = f"invalid API key {self._presented_key(handler)!r}" if status == 401 else f"injected {fault}"
            return self._send(handler, status, _error_body(wire, status, message), headers)
        text = self._content(user, fault)
        tokens_in = math.ceil(len(system + user) / 4) + 8
        tokens_out = math.ceil(len(text) / 4)
        return self._send(handler, 200, _answer(wire, model, text, tokens_in, tokens_out))

    def _authorized(self, handler: _Handler) -> bool:
        return self._api_key is None or self._presented_key(handler) == self._api_key

    @staticmethod
    def _presented_key(handler: _Handler) -> str:
        return handler.headers.get("x-api-key") or handler.headers.get("authorization", "").removeprefix("Bearer ")

    def _content(self, user: str, fault: str | None) -> str:
        pairwise = self.pair_answers(user) is not None
        judgment = self.preference_for(user) if pairwise else self.judgment_for(user)
        if fault == "malformed":
            return json.dumps(judgment)[:40]
        if fault == "invalid":
            if pairwise:
                judgment["preference"] = "C"
            else:
                judgment["scores"][self.dimensions[0]] = self.scale[1] + 2
        text = json.dumps(judgment)
        return f"Here is my evaluation.\n```json\n{text}\n```\nLet me know if you need more." if fault == "prose" else text

    @staticmethod
    def _send(handler: _Handler, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            handler.close_connection = True


def _text(content: Any) -> str:
    """A message's text: a string, or the text blocks of a content list."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


def _messages(wire: str, request: dict[str, Any]) -> tuple[str, str]:
    """(system, last user message) of a request in either wire format."""
    messages = request["messages"]
    if wire == "anthropic":
        return _text(request.get("system", "")), _text(messages[-1]["content"])
    system = "".join(_text(m["content"]) for m in messages if m.get("role") in ("system", "developer"))
    return system, _text([m for m in messages if m.get("role") == "user"][-1]["content"])


def _answer(wire: str, model: str, text: str, tokens_in: int, tokens_out: int) -> dict[str, Any]:
    ident = hashlib.sha256(text.encode()).hexdigest()[:24]
    if wire == "anthropic":
        return {"id": f"msg_{ident}", "type": "message", "role": "assistant", "model": model, "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}}
    return {"id": f"chatcmpl-{ident}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}}


def _error_body(wire: str, status: int, message: str) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}.get(status, "api_error")
    if wire == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
