"""Router: sticky experiment routing over model callables, a kill switch, shadow calls, and a log row per request.

Each request is assigned an arm by ``core.assignment.assign`` (SHA-256 of ``experiment:unit``
into 10,000 buckets cut by the weights: the function the pipeline's log checks use), with
the weights the kill switch gives now (``serving.routing``). The unit is the request id
unless the caller passes ``unit_id`` (a user id keeps a user in one arm; the pipeline's
assignment check compares against the request id, so it then reports mismatches).

The served call runs in the caller (``call``) or on the event loop (``acall``; a plain
function is run in a worker thread so the loop is never blocked). Its exception is
logged and re-raised unchanged: the router never alters what the user gets.

A shadow model gets the same payload at the same time, on a bounded thread pool
(``call``) or as a separate task (``acall``). It has its own timeout, its outcome is
logged with ``variant=shadow``, request id ``<id>-shadow`` and ``metadata.shadow_of``, and
nothing it does reaches the user: the served call does not wait for it, its errors are
swallowed (logged), and when ``max_in_flight`` shadow calls are already running the
shadow is skipped (counted), never queued. A plain-function shadow that overruns its
timeout is logged as a timeout when it returns (Python cannot interrupt a thread); an
async one is cancelled at the deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelwatch.core.assignment import BUCKETS, assign, bucket
from modelwatch.serving.emitter import LogEmitter
from modelwatch.serving.routing import Decision, Experiment, KillSwitch

log = logging.getLogger("modelwatch.serving")
ModelFn = Callable[..., Any]
SHADOW_SALT = "modelwatch-shadow"


@dataclass(frozen=True)
class Shadow:
    """A model called beside the served one: ``timeout_s`` its own deadline, ``share`` of requests mirrored (sticky by request id)."""

    model: ModelFn
    timeout_s: float = 10.0
    share: float = 1.0
    max_in_flight: int = 8

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise TypeError(f"Shadow.model must be callable, got {type(self.model).__name__}")
        if self.timeout_s <= 0 or not 0 <= self.share <= 1 or self.max_in_flight < 1:
            raise ValueError(f"Shadow: need timeout_s > 0, 0 <= share <= 1, max_in_flight >= 1; got {self.timeout_s}, {self.share}, {self.max_in_flight}")

    def mirrors(self, request_id: str) -> bool:
        return self.share >= 1 or bucket(request_id, SHADOW_SALT) < round(self.share * BUCKETS)


def prompt_text(payload: Any) -> str:
    """The text logged as ``prompt``: a string as is; chat messages as their contents joined by newlines; else JSON."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, list) and all(isinstance(m, Mapping) and "content" in m for m in payload):
        return "\n".join(m["content"] if isinstance(m["content"], str) else json.dumps(m["content"], default=str) for m in payload)
    return json.dumps(payload, default=str, sort_keys=True)


def prediction_fields(result: Any) -> dict[str, Any]:
    """``prediction``/``probability`` of a classic model's result: ``{"prediction": ..., "probability": ...}`` or the bare prediction."""
    if isinstance(result, Mapping) and "prediction" in result:
        return {"prediction": result["prediction"], "probability": result.get("probability")}
    return {"prediction": result}


class Router:
    """Routes requests between model callables and logs each one through ``emitter``.

    ``Router(emitter, control=fn_a, treatment=fn_b, experiment=Experiment("exp-042", {"control": 0.9, "treatment": 0.1}))``,
    or ``arms={"control": a, "treatment-1": b, "treatment-2": c}`` for more arms; without
    an experiment, one callable (``control=`` or ``arms={"production": fn}``) serves
    ``variant=production``. A model callable takes the payload and the call's keyword
    arguments: ``fn(payload, **kwargs)``; it may be a plain or an async function.
    """

    def __init__(self, emitter: LogEmitter, *, arms: Mapping[str, ModelFn] | None = None, control: ModelFn | None = None,
                 treatment: ModelFn | None = None, experiment: Experiment | None = None, kill_switch: KillSwitch | None = None,
                 shadow: Shadow | None = None):
        self.emitter, self.experiment, self.kill_switch, self.shadow = emitter, experiment, kill_switch, shadow
        self.arms = self._arms(arms, control, treatment)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=shadow.max_in_flight, thread_name_prefix="modelwatch-shadow") if shadow else None
        self._slots = threading.BoundedSemaphore(shadow.max_in_flight) if shadow else None
        self._tasks: set[asyncio.Task[None]] = set()

    def _arms(self, arms: Mapping[str, ModelFn] | None, control: ModelFn | None, treatment: ModelFn | None) -> dict[str, ModelFn]:
        exp = self.experiment
        if arms is None:
            if exp is None:
                arms = {"production": control} if treatment is None else {}
            else:
                arms = {exp.control: control, **({"treatment": treatment} if treatment is not None else {})}
        arms = {name: fn for name, fn in arms.items() if fn is not None}
        if exp is None and len(arms) != 1:
            raise ValueError(f"without an experiment the router serves one model; got arms {sorted(arms)}")
        if exp is not None and set(arms) != set(exp.weights):
            raise ValueError(f"experiment {exp.id!r} has arms {sorted(exp.weights)} but the router was given callables for {sorted(arms)}")
        for name, fn in arms.items():
            if not callable(fn):
                raise TypeError(f"arm {name!r}: expected a callable model, got {type(fn).__name__}")
        return dict(arms)

    # -- routing ---------------------------------------------------------------------------------------------

    def decision(self) -> Decision | None:
        """The weights in force now (None without an experiment)."""
        if self.experiment is None:
            return None
        if self.kill_switch is None:
            return Decision(dict(self.experiment.weights), "configured")
        return self.kill_switch.decide(self.experiment)

    def choose(self, unit_id: str) -> str:
        """The arm serving ``unit_id`` now."""
        decision = self.decision()
        if decision is None:
            return next(iter(self.arms))
        return assign(unit_id, self.experiment.id, decision.weights)

    # -- calls -----------------------------------------------------------------------------------------------

    def call(self, payload: Any, *, request_id: str | None = None, unit_id: str | None = None, metadata: Mapping[str, Any] | None = None,
             **kwargs: Any) -> Any:
        """Serve one request with a plain-function model; returns the model's result (its exception is re-raised)."""
        request_id = request_id or uuid.uuid4().hex
        arm = self.choose(unit_id or request_id)
        self._count(arm)
        self._start_shadow(payload, request_id, metadata, kwargs)
        started_at, t0 = datetime.now(UTC), time.perf_counter()
        try:
            result = self.arms[arm](payload, **kwargs)
            if inspect.isawaitable(result):
                _discard(result)
                raise TypeError(f"arm {arm!r} returned an awaitable: use Router.acall for async models")
        except BaseException as exc:
            self._log(arm, payload, request_id, metadata, started_at, (time.perf_counter() - t0) * 1000, None, exc)
            raise
        self._log(arm, payload, request_id, metadata, started_at, (time.perf_counter() - t0) * 1000, result, None)
        return result

    async def acall(self, payload: Any, *, request_id: str | None = None, unit_id: str | None = None, metadata: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> Any:
        """Serve one request on the event loop (async models awaited, plain ones run in a thread)."""
        request_id = request_id or uuid.uuid4().hex
        arm = self.choose(unit_id or request_id)
        self._count(arm)
        self._start_shadow_task(payload, request_id, metadata, kwargs)
        started_at, t0 = datetime.now(UTC), time.perf_counter()
        try:
            result = await _invoke(self.arms[arm], payload, kwargs)
        except BaseException as exc:
            self._log(arm, payload, request_id, metadata, started_at, (time.perf_counter() - t0) * 1000, None, exc)
            raise
        self._log(arm, payload, request_id, metadata, started_at, (time.perf_counter() - t0) * 1000, result, None)
        return result

    def _log(self, variant: str, payload: Any, request_id: str, metadata: Mapping[str, Any] | None, started_at: datetime, latency_ms: float,
             result: Any, error: BaseException | None, shadow_of: str | None = None) -> None:
        """One row through the emitter; a failure to log is reported, never raised into the request."""
        fields: dict[str, Any] = {"metadata": {**(metadata or {}), **({"shadow_of": shadow_of} if shadow_of else {})} or None}
        if self.experiment is not None and shadow_of is None:
            fields["experiment_id"] = self.experiment.id
        if self.emitter.kind == "llm":
            fields["prompt"] = prompt_text(payload)
        else:
            fields["features"] = payload
            if error is None:
                fields.update(prediction_fields(result))
        try:
            self.emitter.record_call(started_at=started_at, latency_ms=latency_ms, result=result, error=error, variant=variant,
                                     request_id=request_id, **fields)
        except Exception:  # noqa: BLE001 - logging must never fail the user's request
            self._count("log_failures")
            log.exception("modelwatch: logging request %s failed", request_id)

    # -- shadow ----------------------------------------------------------------------------------------------

    def _start_shadow(self, payload: Any, request_id: str, metadata: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> None:
        if self.shadow is None or not self.shadow.mirrors(request_id):
            return
        if not self._slots.acquire(blocking=False):
            self._count("shadow_skipped")
            return
        self._count("shadow_started")
        try:
            self._pool.submit(self._run_shadow, payload, request_id, metadata, kwargs, datetime.now(UTC))
        except RuntimeError:  # the pool was shut down
            self._slots.release()
            self._count("shadow_skipped")

    def _run_shadow(self, payload: Any, request_id: str, metadata: Mapping[str, Any] | None, kwargs: dict[str, Any], started_at: datetime) -> None:
        try:
            t0 = time.perf_counter()
            result, error = None, None
            try:
                result = self.shadow.model(payload, **kwargs)
                if inspect.isawaitable(result):
                    _discard(result)
                    raise TypeError("the shadow model returned an awaitable: use Router.acall for async models")
            except Exception as exc:  # noqa: BLE001 - recorded as the shadow's status
                error = exc
            latency_ms = (time.perf_counter() - t0) * 1000
            if latency_ms > self.shadow.timeout_s * 1000:
                result, error, latency_ms = None, TimeoutError(f"shadow exceeded {self.shadow.timeout_s} s"), self.shadow.timeout_s * 1000
            self._shadow_outcome(error)
            self._log("shadow", payload, f"{request_id}-shadow", metadata, started_at, latency_ms, result, error, shadow_of=request_id)
        finally:
            self._slots.release()

    def _start_shadow_task(self, payload: Any, request_id: str, metadata: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> None:
        if self.shadow is None or not self.shadow.mirrors(request_id):
            return
        if len(self._tasks) >= self.shadow.max_in_flight:
            self._count("shadow_skipped")
            return
        self._count("shadow_started")
        task = asyncio.get_running_loop().create_task(self._shadow_async(payload, request_id, metadata, kwargs, datetime.now(UTC)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shadow_async(self, payload: Any, request_id: str, metadata: Mapping[str, Any] | None, kwargs: dict[str, Any],
                            started_at: datetime) -> None:
        t0 = time.perf_counter()
        result, error = None, None
        try:
            result = await asyncio.wait_for(_invoke(self.shadow.model, payload, kwargs), self.shadow.timeout_s)
        except Exception as exc:  # noqa: BLE001 - TimeoutError included: recorded as the shadow's status
            error = exc
        self._shadow_outcome(error)
        self._log("shadow", payload, f"{request_id}-shadow", metadata, started_at, (time.perf_counter() - t0) * 1000, result, error,
                  shadow_of=request_id)

    def _shadow_outcome(self, error: BaseException | None) -> None:
        self._count("shadow_ok" if error is None else "shadow_failed")

    async def drain(self) -> None:
        """Wait for the shadow tasks of ``acall`` still running (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- counters and life cycle -----------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def stats(self) -> dict[str, int]:
        """Requests per arm, ``shadow_started``/``shadow_ok``/``shadow_failed``/``shadow_skipped``, ``log_failures``."""
        with self._lock:
            return dict(self._counts)

    def close(self, wait: bool = True) -> None:
        """Stop the shadow pool (waiting for running shadow calls when ``wait``) and the kill switch; the emitter is the caller's."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)  # waiting means: let the started shadow calls log
        if self.kill_switch is not None:
            self.kill_switch.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _invoke(fn: ModelFn, payload: Any, kwargs: dict[str, Any]) -> Any:
    """Await an async model; run a plain one in a worker thread."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):  # noqa: B004
        return await fn(payload, **kwargs)
    result = await asyncio.to_thread(fn, payload, **kwargs)
    return await result if inspect.isawaitable(result) else result


def _discard(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
