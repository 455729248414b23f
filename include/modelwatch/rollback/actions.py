"""Rollback: route an experiment's traffic back to control, exactly once per breach.

A breach (a hard limit hit, or a guardrail found inferior) is applied through a small
action interface:

- ``RoutingDocumentAction`` writes a new version of the routing document a serving
  router reads from S3 (per experiment: arm weights, state; ``version`` incremented and
  every version also kept immutably at ``<uri>.v<N>``);
- ``WebhookAction`` POSTs the rollback to a deployment endpoint, with a timeout and
  retries with exponential backoff on connection errors and 5xx answers;
- ``VariableAction`` writes the routing state into a key-value store through two
  callables (inside Airflow: ``Variable.get`` / ``Variable.set``), which keeps this module
  free of Airflow.

Exactly-once comes from S3 conditional writes (``If-None-Match: *``): the first caller
for a breach creates a claim object and proceeds; a concurrent or duplicate event finds
the claim held by another run and stops; a retry of the claimant itself proceeds,
because every action is idempotent. The audit record is written once, after the
action, and never overwritten. ``dry_run`` decides, audits and notifies but changes
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from modelwatch.observe.notifications import deliver
from modelwatch.observe.webhook import post_json
from modelwatch.storage.keys import audit_prefix
from modelwatch.storage.s3 import exists, get_json, get_versioned, put_if_absent, put_if_unchanged

ROLLED_BACK = "rolled_back"


class RollbackAction(Protocol):
    """Something that changes an experiment's routing (back to control, or a promotion); must be idempotent."""

    name: str

    def target(self) -> str: ...

    def apply(self, breach: dict[str, Any]) -> dict[str, Any]:
        """Roll the breach's experiment back; returns ``{"outcome": "rolled_back" | "already_rolled_back", ...details}``."""
        ...

    def apply_change(self, change: dict[str, Any]) -> dict[str, Any]:
        """Apply a routing change (``rollback_change``, ``promotion.promotion_change``); ``outcome`` is its state or ``already_<state>``."""
        ...


def rollback_change(breach: dict[str, Any]) -> dict[str, Any]:
    """The routing change a breach asks for: all of the experiment's traffic to control."""
    return {"action": "rollback", "state": ROLLED_BACK, "model_id": breach["model_id"], "experiment_id": breach["experiment_id"],
            "weights": {breach["control"]: 1.0, breach["treatment"]: 0.0}, "id_key": "breach_id", "id": breach["breach_id"],
            "reason": breach["reason"], "decided_at": breach["detected_at"]}


def routed(routing: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The routing state with ``change`` applied to its experiment (a new version)."""
    doc = json.loads(json.dumps(routing))
    doc.setdefault("experiments", {})[change["experiment_id"]] = {
        "state": change["state"], "weights": change["weights"], change["id_key"]: change["id"], "reason": change["reason"],
        "decided_at": change["decided_at"]}
    doc["model_id"] = change["model_id"]
    doc["version"] = int(doc.get("version", 0)) + 1
    return doc


def routed_to_control(routing: dict[str, Any], breach: dict[str, Any]) -> dict[str, Any]:
    """The routing state with the breached experiment sending all traffic to control (a new version)."""
    return routed(routing, rollback_change(breach))


def _already(routing: dict[str, Any], change: dict[str, Any]) -> dict[str, Any] | None:
    """The outcome when the routing already has the change's state for its experiment, else None.

    When this very change did it (a retried claimant that acted and then died before its
    audit record), the outcome is the state itself: the audit then records the action once.
    A rolled-back experiment is never promoted afterwards.
    """
    state = routing.get("experiments", {}).get(change["experiment_id"], {})
    if state.get("state") == ROLLED_BACK and change["state"] != ROLLED_BACK:
        return {"outcome": "already_rolled_back", "routing": routing}
    if state.get("state") != change["state"]:
        return None
    outcome = change["state"] if state.get(change["id_key"]) == change["id"] else f"already_{change['state']}"
    return {"outcome": outcome, "routing": routing}


class RoutingDocumentAction:
    name = "routing_document"
    MAX_CONFLICTS = 5

    def __init__(self, client, uri: str):
        self.client, self.uri = client, uri

    def target(self) -> str:
        return self.uri

    def _read(self) -> tuple[dict[str, Any], str | None]:
        body, etag = get_versioned(self.client, self.uri)
        return (json.loads(body) if body else {"experiments": {}}), etag

    def apply(self, breach: dict[str, Any]) -> dict[str, Any]:
        return self.apply_change(rollback_change(breach))

    def apply_change(self, change: dict[str, Any]) -> dict[str, Any]:
        """Compare-and-swap on the live document (``If-Match`` its ETag, ``If-None-Match: *`` when new): a writer
        that loses the race re-reads and decides again, so changes made at the same time never overwrite
        each other and an experiment changes state once. Every version is also kept at ``<uri>.v<N>``."""
        for _ in range(self.MAX_CONFLICTS):
            current, etag = self._read()
            done = _already(current, change)
            if done is not None:
                return done
            routing = routed(current, change)
            body = json.dumps(routing, indent=2, sort_keys=True).encode()
            if put_if_unchanged(self.client, self.uri, body, etag):
                version_uri = f"{self.uri}.v{routing['version']}"
                put_if_absent(self.client, version_uri, body)
                return {"outcome": change["state"], "routing": routing, "version_uri": version_uri}
        raise RuntimeError(f"routing document {self.uri} kept changing through {self.MAX_CONFLICTS} attempts to apply "
                           f"{change['action']} of {change['experiment_id']}")


class WebhookAction:
    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 10.0, retries: int = 3, poster: Callable[..., dict[str, Any]] = post_json):
        self.url, self.timeout_s, self.retries, self.poster = url, timeout_s, retries, poster

    def target(self) -> str:
        return self.url

    def apply(self, breach: dict[str, Any]) -> dict[str, Any]:
        return self.apply_change(rollback_change(breach))

    def apply_change(self, change: dict[str, Any]) -> dict[str, Any]:
        payload = {"action": change["action"], "model_id": change["model_id"], "experiment_id": change["experiment_id"],
                   "weights": change["weights"], change["id_key"]: change["id"], "reason": change["reason"]}
        # the change's id doubles as an idempotency key, so a retried POST is safe for the receiver to deduplicate
        response = self.poster(self.url, payload, timeout_s=self.timeout_s, retries=self.retries, headers={"Idempotency-Key": change["id"]})
        return {"outcome": change["state"], "response": response}


class VariableAction:
    name = "airflow_variable"

    def __init__(self, key: str, get: Callable[[str], str | None], set_: Callable[[str, str], None]):
        self.key, self.get, self.set = key, get, set_

    def target(self) -> str:
        return f"variable:{self.key}"

    def apply(self, breach: dict[str, Any]) -> dict[str, Any]:
        return self.apply_change(rollback_change(breach))

    def apply_change(self, change: dict[str, Any]) -> dict[str, Any]:
        raw = self.get(self.key)
        current = json.loads(raw) if raw else {"experiments": {}}
        done = _already(current, change)
        if done is not None:
            return done
        routing = routed(current, change)
        self.set(self.key, json.dumps(routing, sort_keys=True))
        return {"outcome": change["state"], "routing": routing}


def apply_rollback(client, reports_uri: str, breach: dict[str, Any], action: RollbackAction, claimant: str, *, dry_run: bool = False,
                   notify: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Apply one breach's rollback through ``action``.

    Outcomes: ``rolled_back`` (the action changed the routing), ``already_rolled_back`` (an
    earlier breach of the same experiment acted), ``already_applied`` (this breach was
    handled before), ``claimed_elsewhere`` (another run holds this breach) or ``dry_run``.
    """
    prefix = audit_prefix(reports_uri, breach["model_id"], breach["experiment_id"])
    return apply_once(client, f"{prefix}/{breach['breach_id']}", rollback_change(breach), action, claimant, {"breach": breach, "breach_id": breach["breach_id"]},
                      dry_run=dry_run, notify=notify)


def apply_once(client, record: str, change: dict[str, Any], action: RollbackAction, claimant: str, subject: dict[str, Any], *,
               dry_run: bool = False, notify: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Apply ``change`` through ``action`` exactly once for the audit record ``<record>.json`` (its claim: ``<record>.claim.json``).

    The first caller creates the claim (S3 ``If-None-Match: *``) and acts; a concurrent or duplicate
    caller finds the claim held by another run and stops (``claimed_elsewhere``); a retry of the
    claimant itself acts again, which the idempotent actions make safe; once the audit record exists
    every caller stops (``already_applied``). ``subject`` (what asked for the change) goes into the record.
    """
    audit_uri, claim_uri = f"{record}.json", f"{record}.claim.json"
    summary = {"audit_uri": audit_uri, **{k: v for k, v in subject.items() if not isinstance(v, dict)}, "action": action.name, "target": action.target()}
    if exists(client, audit_uri):
        return {"outcome": "already_applied", **summary}
    claim = {"claimant": claimant, "claimed_at": datetime.now(UTC).isoformat()}
    if not put_if_absent(client, claim_uri, json.dumps(claim).encode()):
        holder = get_json(client, claim_uri).get("claimant")
        if holder != claimant:
            return {"outcome": "claimed_elsewhere", "claimant": holder, **summary}
    result = {"outcome": "dry_run"} if dry_run else action.apply_change(change)
    audit = {**subject, **summary, **result, "dry_run": dry_run, "claimant": claimant, "applied_at": datetime.now(UTC).isoformat()}
    put_if_absent(client, audit_uri, json.dumps(audit, indent=2, sort_keys=True, default=str).encode())
    outcome = {"outcome": result["outcome"], **summary}
    if notify is not None:
        outcome["notified"] = _notify(notify, audit)
    return outcome


def notifier(url: str | None, *, timeout_s: float, retries: int, setting: str) -> Callable[[dict[str, Any]], Any] | None:
    """A callable that POSTs an audit record to ``url`` (``rollback.notify_url``), or None when no URL is configured.

    It delivers through :func:`modelwatch.observe.notifications.deliver`, so its failures carry no secret
    part of the URL; ``setting`` names where the URL is configured, for the message of an unusable one.
    """
    if not url:
        return None
    return partial(deliver, url, timeout_s=timeout_s, retries=retries, setting=setting)


def _notify(notify: Callable[[dict[str, Any]], Any], record: dict[str, Any]) -> str:
    """Tell someone; a failed notification is reported, never undoes or blocks the rollback.

    The report (``failed: <error>``) becomes the task's result, stored in XCom and shown in the UI,
    so ``notify`` must raise errors that hold no secret (those of :func:`notifier` do not).
    """
    try:
        notify(record)
        return "sent"
    except Exception as exc:  # noqa: BLE001 - any transport failure is recorded, not raised
        return f"failed: {exc}"
