"""Rollback: route an experiment's traffic back to control, exactly once per breach.

The action rewrites the model's routing document in S3 (the document a serving router
reads: per experiment, the arm weights and a state). Exactly-once comes from S3
conditional writes (``If-None-Match: *``): the first caller for a breach creates a claim
object and proceeds; a concurrent or duplicate event finds the claim and stops; a retry
of the claimant itself proceeds, because the routing update is idempotent. The audit
record is written once, after the action, and never overwritten.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from modelwatch.storage import exists, get_json, put_if_absent, put_json


def audit_prefix(reports_uri: str, model_id: str, experiment_id: str) -> str:
    return f"{reports_uri.rstrip('/')}/_audit/rollbacks/model_id={model_id}/experiment={experiment_id}"


def _read_routing(client, routing_uri: str) -> dict[str, Any]:
    try:
        return get_json(client, routing_uri)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return {"experiments": {}}
        raise


def routed_to_control(routing: dict[str, Any], breach: dict[str, Any]) -> dict[str, Any]:
    """The routing document with the breached experiment sending all traffic to control."""
    doc = json.loads(json.dumps(routing))
    doc.setdefault("experiments", {})[breach["experiment_id"]] = {
        "state": "rolled_back",
        "weights": {breach["control"]: 1.0, breach["treatment"]: 0.0},
        "breach_id": breach["breach_id"],
        "reason": breach["reason"],
        "decided_at": breach["detected_at"],
    }
    doc["model_id"] = breach["model_id"]
    return doc


def apply_rollback(client, reports_uri: str, routing_uri: str, breach: dict[str, Any], claimant: str) -> dict[str, Any]:
    """Apply one breach's rollback.

    Outcomes: ``rolled_back`` (the routing document changed), ``already_rolled_back`` (an
    earlier breach of the same experiment acted), ``already_applied`` (this breach was
    handled before) or ``claimed_elsewhere`` (another run holds this breach).
    """
    prefix = audit_prefix(reports_uri, breach["model_id"], breach["experiment_id"])
    audit_uri = f"{prefix}/{breach['breach_id']}.json"
    claim_uri = f"{prefix}/{breach['breach_id']}.claim.json"
    if exists(client, audit_uri):
        return {"outcome": "already_applied", "audit_uri": audit_uri, "breach_id": breach["breach_id"]}
    claim = {"claimant": claimant, "claimed_at": datetime.now(UTC).isoformat()}
    if not put_if_absent(client, claim_uri, json.dumps(claim).encode()):
        holder = get_json(client, claim_uri).get("claimant")
        if holder != claimant:
            return {"outcome": "claimed_elsewhere", "claimant": holder, "audit_uri": audit_uri, "breach_id": breach["breach_id"]}
    current = _read_routing(client, routing_uri)
    state = current.get("experiments", {}).get(breach["experiment_id"], {}).get("state")
    if state == "rolled_back":
        outcome, routing = "already_rolled_back", current  # an earlier breach already acted; record the decision only
    else:
        outcome, routing = "rolled_back", routed_to_control(current, breach)
        put_json(client, routing_uri, routing)
    record = {"breach": breach, "outcome": outcome, "action": "routing_document", "routing_uri": routing_uri, "routing": routing,
              "claimant": claimant, "applied_at": datetime.now(UTC).isoformat()}
    put_if_absent(client, audit_uri, json.dumps(record, indent=2, sort_keys=True).encode())
    return {"outcome": outcome, "audit_uri": audit_uri, "routing_uri": routing_uri, "breach_id": breach["breach_id"]}
