"""A travel team's own log folder, unlike the demo's: its own router (SHA-1 of the traveller), arm names, fields and layout.

- ``trip-planner-7`` (an LLM): gzip JSON lines in ``planner/dt=YYYY-MM-DD/`` folders, one file per day. Experiment
  ``itinerary-exp`` routes by ``metadata.traveller_id`` (not the request id) with the team's hash: 30% to
  ``ranker_v2``, the rest to ``incumbent`` (no arm is called control). Segments ``metadata.market`` and
  ``metadata.channel``; ``metadata.session`` is unique per request.
- ``fraud-screen-2`` (a classifier): one Parquet file for every day at the top of the folder, no day folders
  (rows are placed by timestamp); features as a struct, ``prediction`` fraud/legit, ``metadata.region``.
- Files modelwatch must not load as logs: a label file and a text file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

START = date(2026, 10, 5)
LLM, CLASSIFIER, EXPERIMENT = "trip-planner-7", "fraud-screen-2", "itinerary-exp"
MARKETS, CHANNELS, REGIONS = ("fr-FR", "ja-JP", "en-GB"), ("app", "web"), ("emea", "apac", "amer")
MERCHANTS = ("airline", "hotel", "rail", "car-hire")
TREATMENT_SHARE = 0.3


def team_arm(traveller: str) -> str:
    """The team's router: SHA-1 of '<traveller>/itinerary-exp', first 8 hex digits, modulo 1000."""
    bucket = int(hashlib.sha1(f"{traveller}/{EXPERIMENT}".encode()).hexdigest()[:8], 16) % 1000
    return "ranker_v2" if bucket < TREATMENT_SHARE * 1000 else "incumbent"


def _stamp(rng: random.Random, day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=rng.randrange(86_400))


def planner_rows(day: date, n: int, seed: int) -> list[dict]:
    rng = random.Random(f"{seed}-{day}")
    rows = []
    for i in range(n):
        traveller = f"trav-{rng.randrange(n // 3)}"
        arm = team_arm(traveller)
        city = rng.choice(("Lyon", "Osaka", "York", "Porto"))
        prompt = f"Plan {rng.randint(2, 9)} days in {city} with {rng.choice(('museums', 'food', 'hiking', 'trains'))}"
        ok = rng.random() > 0.01
        rows.append({
            "request_id": f"tp-{day:%Y%m%d}-{i:05d}", "timestamp": _stamp(rng, day).isoformat().replace("+00:00", "Z"),
            "model_id": LLM, "variant": arm, "experiment_id": EXPERIMENT, "status": "ok" if ok else "error",
            "latency_ms": round(rng.lognormvariate(6.2, 0.3) * (1.05 if arm == "ranker_v2" else 1.0), 1),
            "prompt": prompt, "response": f"Day 1 in {city}: start early, then a {rng.choice(('walk', 'tour', 'ride'))}." if ok else None,
            "prompt_tokens": len(prompt.split()) * 2, "completion_tokens": rng.randint(40, 160),
            "metadata": {"market": rng.choice(MARKETS), "channel": rng.choice(CHANNELS), "traveller_id": traveller,
                         "session": f"s-{day:%m%d}-{i}-{rng.getrandbits(32):08x}"},
        })
    return rows


def fraud_rows(day: date, n: int, seed: int) -> list[dict]:
    rng = random.Random(f"fraud-{seed}-{day}")
    rows = []
    for i in range(n):
        amount = round(rng.lognormvariate(5, 0.8), 2)
        p = 1 / (1 + math.exp(-(amount - 400) / 150))
        rows.append({
            "request_id": f"fs-{day:%Y%m%d}-{i:05d}", "timestamp": _stamp(rng, day), "model_id": CLASSIFIER, "variant": "production",
            "status": "ok", "latency_ms": round(rng.uniform(4, 30), 2),
            "features": {"amount": amount, "merchant_type": rng.choice(MERCHANTS), "card_present": rng.random() < 0.6},
            "prediction": "fraud" if p > 0.5 else "legit", "probability": round(p, 4),
            "metadata": {"region": rng.choice(REGIONS)},
        })
    return rows


def write_team_folder(root: Path, days: int = 3, llm_rows: int = 300, classifier_rows: int = 300, seed: int = 11) -> dict[str, dict[date, int]]:
    """Write the folder; returns rows per model and day."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    written: dict[str, dict[date, int]] = {LLM: {}, CLASSIFIER: {}}
    fraud = []
    for offset in range(days):
        day = START + timedelta(days=offset)
        rows = planner_rows(day, llm_rows, seed)
        folder = root / "planner" / f"dt={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "events-000.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode(), mtime=0))
        written[LLM][day] = len(rows)
        day_rows = fraud_rows(day, classifier_rows, seed)
        fraud += day_rows
        written[CLASSIFIER][day] = len(day_rows)
    random.Random(seed).shuffle(fraud)  # one export of every day, in no particular order
    pq.write_table(pa.Table.from_pylist(fraud), root / "fraud-screen-export.parquet")
    labels = root / "feedback"
    labels.mkdir(exist_ok=True)
    (labels / "chargebacks.jsonl").write_text(json.dumps({"request_id": "fs-20261005-00001", "label": "fraud", "labelled_at": "2026-10-20T00:00:00Z"}) + "\n")
    (root / "README.txt").write_text("exported by the travel team's log shipper\n")
    return written
