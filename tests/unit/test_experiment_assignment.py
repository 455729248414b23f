"""Experiments on a team's own router: assignment declarations, SRM as `invalid`, guardrail watches, judge abstention.

The traffic comes from ``team_router`` (its own hash of its own unit field), never from the demo generator.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest
from modelwatch.config import ConfigError, Experiment, parse_config
from modelwatch.core.assignment import MODELWATCH, HashScheme, assign, bucket
from modelwatch.experiments.data import cumulative_counts, day_record, load_cumulative, store_day, unit_ids
from modelwatch.experiments.decision import analyze_experiment, judge_trust
from team_router import ARMS, TeamRouter, team_day

START = date(2026, 10, 1)
GUARDRAILS = [{"metric": "latency_p99_ms", "direction": "decrease", "margin": 0.05},
              {"metric": "error_rate", "direction": "decrease", "margin": 0.01, "absolute": True}]
PRIMARY = [{"metric": "quality_score_mean", "direction": "increase", "mde": 0.02}]


def _experiment(assignment, *, primary=PRIMARY, guardrails=GUARDRAILS, **extra) -> Experiment:
    return Experiment(id="exp-rt", control=ARMS[0], treatment=ARMS[1], split={ARMS[1]: 0.5}, start=START.isoformat(),
                      assignment=assignment, primary=primary, guardrails=guardrails, **extra)


@pytest.fixture()
def prefix(s3):
    from modelwatch.storage.s3 import ensure_bucket

    ensure_bucket(s3, "assignment-reports")
    return "s3://assignment-reports/reports/_experiments/model_id=travel/experiment=exp-rt"


def _run_days(client, prefix: str, exp: Experiment, days: int, **traffic) -> list[dict]:
    """Store each day of the team's traffic and analyse the experiment from its start, as the stage does; every day's result."""
    router, results = TeamRouter(exp.id, traffic.pop("shares", (0.5, 0.5))), []
    for k in range(days):
        day = START + timedelta(days=k)
        record, latency = day_record(team_day(day, router, **traffic), exp)
        store_day(client, prefix, day, record, latency)
        cumulative = load_cumulative(client, prefix, START, day)
        results.append(analyze_experiment(exp, cumulative, day, sum(cumulative["counts"].values()) / (k + 1)))
    return results


# -- the assignment itself -----------------------------------------------------------------------------------


def test_modelwatch_scheme_is_the_former_hash():
    import hashlib

    for unit in ("r-1", "acct-77", "ünï"):
        digest = hashlib.sha256(f"exp-9:{unit}".encode()).digest()
        assert bucket(unit, "exp-9") == int.from_bytes(digest[:8], "big") % 10_000 == MODELWATCH.bucket(unit, "exp-9")
    assert assign("r-1", "exp-9", {"treatment": 0.5, "control": 0.5}) == MODELWATCH.assign("r-1", "exp-9", {"treatment": 0.5, "control": 0.5})


def test_a_described_hash_reproduces_the_team_router():
    router = TeamRouter("exp-rt", shares=(0.3, 0.7))
    scheme = HashScheme("md5", "{unit}|{experiment_id}", 32, 100)
    weights = {ARMS[0]: 0.3, ARMS[1]: 0.7}
    units = [f"acct-{k}" for k in range(3000)]
    assert all(scheme.assign(u, "exp-rt", weights) == router.arm(u) for u in units)
    assert sum(router.arm(u) == ARMS[1] for u in units) / len(units) == pytest.approx(0.7, abs=0.03)
    with pytest.raises(ValueError, match="must contain"):
        HashScheme("md5", "{experiment_id}", 32, 100)
    with pytest.raises(ValueError, match="bits must lie"):
        HashScheme("md5", "{unit}", 129, 100)


def test_a_murmur3_router_is_declared_with_its_seed():
    """A feature-flag router on MurmurHash3 x86 32-bit (Unleash's normalisation: hash("<group>:<user>", seed) % 100)."""
    import mmh3

    scheme = HashScheme("murmur3", "{experiment_id}:{unit}", 32, 100, seed=86028157)
    for k in range(500):
        expected = mmh3.hash(f"exp-rt:user-{k}", 86028157, signed=False) % 100
        assert scheme.bucket(f"user-{k}", "exp-rt") == expected
    assert HashScheme("murmur3", "{unit}", 32, 100).bucket("x", "e") == mmh3.hash("x", 0, signed=False) % 100
    with pytest.raises(ValueError, match="takes none"):
        HashScheme("md5", "{unit}", 32, 100, seed=1)
    cfg = parse_config(_config({"assignment": {"method": "hash", "algorithm": "murmur3", "salt": "{experiment_id}:{unit}", "bits": 32,
                                               "buckets": 100, "seed": 86028157, "unit": "metadata.user_id"}}))
    assert cfg.models[0].experiments[0].assignment.scheme() == scheme
    with pytest.raises(ConfigError, match="seed is MurmurHash3's"):
        parse_config(_config({"assignment": {"method": "hash", "algorithm": "md5", "salt": "{unit}", "bits": 32, "buckets": 100, "seed": 3}}))


def test_the_unit_is_read_from_a_dotted_path_of_the_log_row():
    rows = team_day(START, TeamRouter("exp-rt"), accounts=20)
    uids = unit_ids(rows, "metadata.account.uid")
    assert uids.str.startswith("acct-").all()
    assert unit_ids(rows, "booking.traveller").tolist() == uids.tolist()  # an unknown top-level field, kept in extra
    assert unit_ids(rows, "metadata.account.missing").isna().all()
    assert unit_ids(rows, "request_id").str.startswith("bk-").all()


# -- health by declaration -----------------------------------------------------------------------------------


def test_a_declared_hash_is_verified_per_request_and_a_wrong_declaration_is_caught():
    router = TeamRouter("exp-rt")
    rows = team_day(START, router, seed=1)
    right = _experiment(router.declaration())
    record, _ = day_record(rows, right)
    assert record["assignment_mismatches"] == 0 and record["units_missing"] == 0 and record["units_in_several_arms"] == 0
    wrong_salt = _experiment({**router.declaration(), "salt": "{experiment_id}:{unit}"})
    record, _ = day_record(rows, wrong_salt)
    assert 0.35 < record["assignment_mismatches"] / len(rows) < 0.65
    cumulative = {**_cumulative_of(record), "mismatch_examples": record["mismatch_examples"]}
    result = analyze_experiment(wrong_salt, cumulative, START, len(rows))
    problem = next(p for p in result["health"]["problems"] if "served an arm other than" in p)
    assert "md5 of '{experiment_id}:{unit}'" in problem and "metadata.account.uid" in problem and "served" in problem
    assert result["decision"] != "promote"
    # modelwatch's own hash over request ids is not this router: the default declaration flags it
    assert day_record(rows, _experiment("modelwatch"))[0]["assignment_mismatches"] > 0.35 * len(rows)


def _cumulative_of(record: dict) -> dict:
    return {"days": [START.isoformat()], "missing_days": [], "latency": {}, **record}


def test_external_assignment_checks_split_exposure_and_units_not_hashes():
    exp = _experiment({"method": "external", "unit": "metadata.account.uid"})
    rows = team_day(START, TeamRouter(exp.id), external=True, seed=2)
    record, _ = day_record(rows, exp)
    assert record["assignment_mismatches"] is None and record["units_in_several_arms"] == 0
    rows.loc[rows.index[:40], "variant"] = ARMS[1]  # 40 requests of early accounts also served the candidate
    record, _ = day_record(rows, exp)
    result = analyze_experiment(exp, _cumulative_of(record), START, len(rows))
    assert not result["health"]["checked_per_request"] and "external assignment" in result["assignment"]
    assert any("units (metadata.account.uid) were exposed to more than one arm" in p for p in result["health"]["problems"])
    assert not any("served an arm other than" in p for p in result["health"]["problems"])


def test_external_57_43_srm_is_invalid_from_day_one_and_a_guardrail_breach_still_rolls_back(s3, prefix):
    exp = _experiment({"method": "external", "unit": "metadata.account.uid"})
    results = _run_days(s3, prefix, exp, 3, external=True, shares=(0.57, 0.43), candidate_quality=0.05, seed=3)
    for day in results:
        assert day["decision"] == "invalid", day["reasons"]
        assert day["health"]["srm"]["p_value"] < 1e-3
        text = " ".join(day["reasons"])
        assert "sample-ratio mismatch" in text and "Fabijan" in text and "router" in text and "bot filtering" in text
        assert "external assignment by metadata.account.uid" in text
    slow = _run_days(s3, prefix + "-slow", exp, 2, external=True, shares=(0.57, 0.43), slow_candidate=0.04, seed=4)
    assert slow[0]["decision"] == "roll_back" and any("latency_p99_ms inferior" in r for r in slow[0]["reasons"])
    assert any("invalid" in r for r in slow[0]["reasons"])


def test_an_external_aa_test_stays_continue_and_never_promotes(s3, prefix):
    exp = _experiment({"method": "external", "unit": "metadata.account.uid"},
                      primary=[{"metric": "quality_score_mean", "direction": "increase", "mde": 0.002}])  # too small to be futile in 6 days
    for seed in (11, 12):
        results = _run_days(s3, f"{prefix}-aa{seed}", exp, 6, external=True, accounts=1500, seed=seed)
        assert all(r["decision"] == "continue" for r in results), [(r["decision"], r["reasons"]) for r in results]
        assert all(r["health"]["ok"] and r["health"]["srm_counts"] == "units" for r in results)


def test_a_hash_declared_experiment_promotes_a_real_win_with_healthy_checks(s3, prefix):
    exp = _experiment(TeamRouter("exp-rt").declaration(), guardrails=[GUARDRAILS[1]])
    [result] = _run_days(s3, prefix + "-win", exp, 1, accounts=6000, candidate_quality=0.05, seed=5)
    assert result["health"]["ok"], result["health"]["problems"]
    assert result["decision"] == "promote", result["reasons"]


# -- guardrail watch and the counts ---------------------------------------------------------------------------


def test_an_experiment_with_guardrails_only_is_a_guardrail_watch(s3, prefix):
    exp = _experiment(TeamRouter("exp-rt").declaration(), primary=[])
    results = _run_days(s3, prefix + "-watch", exp, 2, seed=6)
    for r in results:
        assert r["decision"] == "guardrail_watch" and r.get("days_remaining") is None
        assert r["reasons"][0].startswith("guardrail watch")
    breach = _run_days(s3, prefix + "-watch-slow", exp, 1, slow_candidate=0.05, seed=7)[0]
    assert breach["decision"] == "roll_back"


def test_cumulative_counts_add_every_stored_day(s3, prefix):
    exp = _experiment(TeamRouter("exp-rt").declaration())
    days = [team_day(START + timedelta(days=k), TeamRouter(exp.id), accounts=300, seed=8) for k in range(3)]
    for k, rows in enumerate(days):
        store_day(s3, prefix + "-counts", START + timedelta(days=k), *day_record(rows, exp))
    counts = cumulative_counts(s3, prefix + "-counts", START, START + timedelta(days=3))
    assert sum(counts.values()) == sum(len(d) for d in days) > len(days[-1])


# -- judge agreement ----------------------------------------------------------------------------------------


def _judge_cumulative(shift: float) -> dict:
    import numpy as np

    rng = np.random.default_rng(9)
    rows = team_day(START, TeamRouter("exp-rt"), accounts=4000, seed=9)
    record, _ = day_record(rows, _experiment(TeamRouter("exp-rt").declaration()))
    for arm in ARMS:
        scores = rng.normal(3.5 + (shift if arm == ARMS[1] else 0.0), 0.8, 800)
        record["stats"][arm]["judge.helpfulness"] = {"n": 800, "sum": float(scores.sum()), "sum_sq": float((scores ** 2).sum())}
    return _cumulative_of(record)


def test_a_judge_metric_that_does_not_agree_with_people_abstains_and_says_why():
    exp = _experiment(TeamRouter("exp-rt").declaration(), primary=[{"metric": "judge.helpfulness", "direction": "increase", "mde": 0.02}],
                      guardrails=[])
    cumulative = _judge_cumulative(0.4)
    agreement = {"helpfulness": {"kind": "dimension", "n": 60, "kappa": 0.12, "kappa_low": 0.01, "kappa_high": 0.3,
                                 "verdict": "does_not_agree", "reason": "kappa below 0.4"}}
    held = analyze_experiment(exp, cumulative, START, 5000, judge_trust=judge_trust({"agreement": agreement}, 0.6))
    [primary] = held["primary"]
    assert primary["abstained"] and held["decision"] != "promote"
    assert "judge.helpfulness abstains" in primary["reason"] and "0.12" in primary["reason"] and "0.6" in primary["reason"]
    assert held["abstained"] == [primary["reason"]]
    usable = {"helpfulness": {**agreement["helpfulness"], "kappa": 0.74, "verdict": "usable"}}
    decides = analyze_experiment(exp, cumulative, START, 5000, judge_trust=judge_trust({"agreement": usable}, 0.6))
    assert decides["decision"] == "promote", decides["reasons"]
    assert decides["abstained"] == [] and decides["judge_decides"] == [decides["primary"][0]["judge_agreement"]]
    assert "judge.helpfulness may decide" in decides["judge_decides"][0] and "0.74" in decides["judge_decides"][0]
    no_record = analyze_experiment(exp, cumulative, START, 5000, judge_trust=judge_trust(None))
    assert no_record["decision"] == "promote" and no_record["abstained"] == []
    weak_no_minimum = {"helpfulness": {**agreement["helpfulness"], "kappa": 0.5, "verdict": "weak"}}
    assert analyze_experiment(exp, cumulative, START, 5000, judge_trust=judge_trust({"agreement": weak_no_minimum}))["primary"][0]["abstained"]


# -- config -------------------------------------------------------------------------------------------------


def _config(experiment: dict, **model) -> dict:
    return {"models": [{"id": "travel", "kind": "llm", "rollback": {"uri": "s3://b/routing.json"},
                        "experiments": [{"id": "exp-rt", "control": ARMS[0], "treatment": ARMS[1], "split": {ARMS[1]: 0.5}, **experiment}],
                        **model}]}


def test_assignment_declarations_parse_and_bad_ones_name_the_fix():
    cfg = parse_config(_config({"assignment": "external"}))
    assert cfg.models[0].experiments[0].assignment.method == "external"
    declared = parse_config(_config({"assignment": TeamRouter("exp-rt").declaration()})).models[0].experiments[0]
    assert declared.assignment_weights() == {ARMS[0]: 0.5, ARMS[1]: 0.5}
    with pytest.raises(ConfigError, match=r"experiments\[0\]\.assignment: .*method: hash needs salt, bits, buckets"):
        parse_config(_config({"assignment": {"method": "hash", "algorithm": "md5"}}))
    with pytest.raises(ConfigError, match=r"algorithm describe a hash: only for method: hash"):
        parse_config(_config({"assignment": {"method": "external", "algorithm": "md5"}}))
    with pytest.raises(ConfigError, match=r"assignment.order must list the arms"):
        parse_config(_config({"assignment": {**TeamRouter("exp-rt").declaration(), "order": ["baseline", "treatment"]}}))


def test_a_key_in_the_wrong_place_says_where_it_belongs():
    with pytest.raises(ConfigError) as error:
        parse_config(_config({"rollback": {"uri": "s3://b/r.json"}, "segments": ["metadata.locale"]}, mode="fixed"))
    problems = error.value.problems
    assert "models[0].experiments[0].rollback: unknown key; `rollback` belongs under models[].rollback, not models[].experiments[]" in problems
    assert any(p.startswith("models[0].experiments[0].segments") and "belongs under models[].segments" in p for p in problems)
    assert any(p.startswith("models[0].mode") and "models[].experiments[].mode" in p for p in problems)
    with pytest.raises(ConfigError, match=r"did you mean 'treatment'"):
        parse_config(_config({"treatmnt": "x"}))


# -- the page ------------------------------------------------------------------------------------------------


def test_the_page_shows_invalid_guardrail_watch_abstentions_and_the_assignment():
    from modelwatch.publish.page import PageContext, render_partition_page
    from test_report import full_summary

    s = full_summary()
    base = s["experiments"][0]
    s["experiments"] = [
        {**base, "experiment_id": "exp-srm", "decision": "invalid", "reasons": ["invalid: sample-ratio mismatch (chi-squared p = 1e-09)"],
         "assignment": "external assignment by metadata.account.uid (the logged variant is the truth)",
         "abstained": ["judge.helpfulness abstains: the judge's agreement with people is below the minimum (kappa 0.12 < 0.6)"],
         "judge_decides": ["judge.factual_accuracy may decide: the judge agrees with people (kappa 0.74 >= the minimum 0.6)"]},
        {**base, "experiment_id": "exp-watch", "decision": "guardrail_watch", "primary": [], "days_remaining": None,
         "reasons": ["guardrail watch: no primary metric"]},
        {**base, "experiment_id": "exp-done", "decision": "rolled_back", "requests": 23730, "primary": [], "guardrails": [],
         "reasons": ["rolled back at 2026-10-04"]},
    ]
    page = render_partition_page(s, PageContext())
    section = page[page.index("How are the experiments doing?"):]
    assert '<span class="badge alert">invalid</span>' in section and "Invalid comparison:" in section
    assert '<span class="badge continue">guardrail watch</span>' in section and "Guardrail watch:" in section
    assert "days left" not in section and "Did not decide:" in section and "kappa 0.12 &lt; 0.6" in section
    assert "Assignment: <bdi>external assignment by metadata.account.uid" in section
    assert "judge.factual_accuracy may decide: the judge agrees with people (kappa 0.74 &gt;= the minimum 0.6)" in section
    assert "23,730 requests since the start" in section


def test_days_stored_without_units_make_the_srm_count_requests(s3, prefix):
    exp = _experiment({"method": "external", "unit": "metadata.account.uid"})
    router = TeamRouter(exp.id)
    from modelwatch.storage.s3 import put_table

    days = []
    for k in range(2):
        day = START + timedelta(days=k)
        record, summary = day_record(team_day(day, router, accounts=300, external=True, seed=13), exp)
        store_day(s3, prefix + "-old", day, record, summary)
        days.append((day, record, summary))
    stored = load_cumulative(s3, prefix + "-old", START, START + timedelta(days=1))
    assert stored["unit_counts"] is not None and sum(stored["unit_counts"].values()) >= 300
    # the first day as modelwatch stored it before units were kept: every latency, no unit, no sample key, no units.parquet
    first, record, summary = days[0]
    old = pa.table({"arm": summary.latency_table()["arm"], "latency_ms": summary.latency_table()["latency_ms"]})
    record = {k: v for k, v in record.items() if k != "latency_sample"}
    store_day(s3, prefix + "-old", first, record, summary)
    bucket, key = f"{prefix}-old/dt={first.isoformat()}/units.parquet".removeprefix("s3://").split("/", 1)
    s3.delete_object(Bucket=bucket, Key=key)
    put_table(s3, f"{prefix}-old/dt={first.isoformat()}/latency.parquet", old)
    cumulative = load_cumulative(s3, prefix + "-old", START, START + timedelta(days=1))
    assert cumulative["unit_counts"] is None
    assert {arm: np.sort(v).tolist() for arm, v in cumulative["latency"].items()} == {arm: np.sort(v).tolist() for arm, v in stored["latency"].items()}
    assert analyze_experiment(exp, cumulative, START + timedelta(days=1), 1000)["health"]["srm_counts"] == "requests"
